"""Bad input at build level: one clear message, a failed build, and nothing the last build made lost.

Every case feeds a real `ploomber build` of the bring-your-own-data project after a good build,
then compares every product, report, raw snapshot, registry file and the baseline byte for byte.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nbmlops import storage
from nbmlops.registry.store import Store
from nbmlops.registry.versions import list_versions
from tests.conftest import BYO_ENV, make_build
from tests.helpers import breast_cancer_frame

pytestmark = [pytest.mark.pipeline, pytest.mark.xdist_group("byo")]

#: Rewritten by every build on purpose (who holds the build lock); not a product.
VOLATILE = {"products/patients/build.lock"}
FAILED_NOTEBOOK = "products/patients/notebooks/ingest.ipynb"
BUILD_RECORD = "reports/patients/build.json"  # rewritten by every build: running, then how it ended


def state(project) -> dict[str, str]:
    """sha256 of every file the pipeline writes or keeps, plus the registry's versions."""
    files = {}
    for folder in ("products", "reports", "data", "model", "mlruns"):
        for path in sorted((project / folder).rglob("*")):
            rel = str(path.relative_to(project))
            if path.is_file() and rel not in VOLATILE:
                files[rel] = storage.sha256_file(path)
    store = Store.from_params(_env(project)["mlflow"])
    files["registry"] = list_versions(store).to_json()
    return files


def _env(project) -> dict:
    from nbmlops.envfile import load_env

    return load_env(project / BYO_ENV)


def _good() -> pd.DataFrame:
    return breast_cancer_frame(hostile=True)


def _csv(name, df=None, **to_csv):
    def write(project):
        (_good() if df is None else df(_good())).to_csv(project / name, index=False, **to_csv)
        return ["--env--source", name]

    return write


def _bytes(name, content: bytes):
    def write(project):
        (project / name).write_bytes(content)
        return ["--env--source", name]

    return write


def _set(column, value, rows=slice(0, 5)):
    def change(df):
        df = df.astype({column: object}) if isinstance(value, str) else df
        df.loc[df.index[rows], column] = value
        return df

    return change


def _duplicate_header(project):
    text = _good().to_csv(index=False)
    header, rest = text.split("\n", 1)
    (project / "dup.csv").write_text(header.replace("mean_texture", "mean_area") + "\n" + rest)
    return ["--env--source", "dup.csv"]


def _current_without(project):
    (project / "incoming_bad").mkdir(exist_ok=True)
    current = _good().drop(columns=["diagnosis", "visit_date", "worst_area"]).head(50)
    current.to_csv(project / "incoming_bad" / "2024-08.csv", index=False)
    return ["--env--current_batches", "incoming_bad/*.csv"]


def _env_typo(replace: tuple[str, str], name: str):
    def write(project):
        text = (project / BYO_ENV).read_text()
        assert replace[0] in text
        (project / name).write_text(text.replace(*replace))
        return [f"env:{name}"]

    return write


def _features(name: str, body: str):
    """An env file whose derived features are `body`, in a file of their own."""

    def write(project):
        (project / "features" / f"{name}.py").write_text(f"def derive(rows):\n    {body}\n")
        return _env_typo(("features/patients.py", f"features/{name}.py"), f"env.{name}.yaml")(
            project)  # fmt: skip

    return write


def _outside(project):
    _good().to_csv(project.parent / "outside.csv", index=False)
    return ["--env--source", "../outside.csv"]


CASES = {
    "missing-file": (lambda p: ["--env--source", "nowhere.csv"], "nowhere.csv: file not found"),
    "empty-file": (_bytes("empty.csv", b""), "empty.csv: file is empty"),
    "header-only": (_bytes("header.csv", b"a,b,diagnosis\n"), "header.csv: has a header but no rows"),
    "not-csv-or-parquet": (_bytes("data.xlsx", b"PK\x03\x04"), "data.xlsx: is neither CSV nor Parquet"),
    "corrupt-parquet": (_bytes("data.parquet", b"PAR1 not really"), "data.parquet: cannot be read as parquet"),
    "target-missing": (lambda p: ["--env--data--target", "churned"],
                       "patients.csv, column 'churned': target column is missing"),
    "target-one-class": (_csv("one.csv", lambda d: d.assign(diagnosis="benign")),
                         "one.csv, column 'diagnosis'"),
    "target-unexpected-labels": (_csv("caps.csv", lambda d: d.replace({"diagnosis": {"malignant": "Malignant"}})),
                                 "caps.csv, column 'diagnosis': positive_label 'malignant' does not occur"),
    "text-in-numbers": (_csv("text.csv", _set("mean_texture", "n/a?", slice(0, 1))),
                        "text.csv, column 'mean_texture': "),
    "all-missing-column": (_csv("empty_col.csv", lambda d: d.assign(mean_area=np.nan)),
                           "empty_col.csv, column 'mean_area': every value is missing"),
    "infinite-values": (_csv("inf.csv", _set("mean_area", np.inf)),
                        "inf.csv, column 'mean_area': 5 infinite values"),
    "duplicate-columns": (_duplicate_header, "dup.csv, column 'mean_area': column name appears more than once"),
    "feature-missing-in-current-batch": (_current_without,
                                         "2024-08.csv, column 'worst_area': feature the models were trained on is missing"),
    "time-unparsable": (_csv("dates.csv", _set("visit_date", "last week", slice(0, 3))),
                        "dates.csv, column 'visit_date': "),
    "too-few-rows-for-split": (_csv("short.csv", lambda d: d.assign(visit_date="2024-01-05")),
                               "short.csv, column 'visit_date': data spans 1 periods; the split needs 4"),
    "unknown-data-key-in-env-file": (_env_typo(("sample_frac:", "sampel_frac:"), "env.typo1.yaml"),
                                     "env.typo1.yaml: unknown key 'data.sampel_frac'"),
    "unknown-key-in-env-file": (_env_typo(("monitor_last:", "monitor_lats: 1\nmonitor_last:"), "env.typo2.yaml"),
                                "env.typo2.yaml: unknown key 'monitor_lats'"),
    "unknown-key-on-command-line": (lambda p: ["--env--drfit_share", "0.3"], "unrecognized arguments: --env--drfit_share"),
    "mistyped-value-on-command-line": (lambda p: ["--env--data--sample_frac", "1.5"],
                                       "`sample_frac` must be in (0, 1], got 1.5"),
    "path-outside-project": (_outside, "../outside.csv: is outside the project folder"),
    "candidate-parameter-misspelt": (_env_typo(("min_samples_leaf: 20, max_features", "min_sample_leaf: 20, max_features"), "env.cand1.yaml"),
                                     "env.cand1.yaml: candidates.rf.params: RandomForestClassifier takes no parameter "
                                     "'min_sample_leaf' (did you mean 'min_samples_leaf'?)"),
    "candidate-estimator-misspelt": (_env_typo(("sklearn.ensemble.RandomForestClassifier", "sklearn.ensemble.RandomForrestClassifier"), "env.cand2.yaml"),
                                     "env.cand2.yaml: candidates.rf.estimator: module 'sklearn.ensemble' has no class "
                                     "'RandomForrestClassifier'"),
    "candidate-written-twice": (_env_typo(("candidates:\n", "candidates:\n  rf: sklearn.ensemble.ExtraTreesClassifier\n"), "env.cand3.yaml"),
                                "env.cand3.yaml: line "),
    "env-file-from-before-candidates": (_env_typo(("candidates:", "hyperparams:"), "env.old.yaml"),
                                        "env.old.yaml: no `candidates`: declare the candidate models there"),
    "features-file-missing": (_env_typo(("features/patients.py", "features/nothere.py"), "env.feat1.yaml"),
                              "features/nothere.py not found (`features.file`: your derived features)"),
    "features-drop-rows": (_features("feat2", "return rows.head(10)"),
                           "features/feat2.py: derive returned 10 rows for "),
    "features-raise": (_features("feat3", "return rows.assign(x=rows['mean_areaa'])"),
                       "features/feat3.py: derive raised KeyError: 'mean_areaa' (it receives the input columns"),
    "calibration-rule-unknown": (_env_typo(("threshold: best_f1", "threshold: best_recall"), "env.cal.yaml"),
                                 "env.cal.yaml: calibration.threshold must be best_f1"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_clearly_and_loses_nothing(byo_build, case):
    setup, expected = CASES[case]
    project = byo_build.project
    args = setup(project)
    env_file = args.pop()[4:] if args and args[-1].startswith("env:") else BYO_ENV
    before = state(project)
    done = make_build(project, *args, env_file=env_file)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out[-2000:]
    assert expected in out, out[-3000:]
    # What `make build` shows: the message, not a traceback through Ploomber and IPython.
    assert "Traceback" not in out and "ploomber.exceptions" not in out, out[-3000:]
    log = project / "logs" / f"build-{env_file.removeprefix('env.').removesuffix('.yaml')}.log"
    assert f"full log: {log}" in out or "unrecognized arguments" in out
    after = state(project)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    # Only the failed task's working notebook changes: it now shows the error. The published
    # copy of the last good one (reports/notebooks/ingest.html) is compared with the rest. The
    # build's record is rewritten by every build, and says how this one ended.
    record = storage.read_json(project / BUILD_RECORD)
    assert record["status"] == "failed" and record["message"], record
    changed -= {BUILD_RECORD}
    assert changed <= {FAILED_NOTEBOOK}, f"a failed build changed {sorted(changed)}"
    if changed:
        assert "build failed in task 'ingest'" in out  # the earliest task stopped it
