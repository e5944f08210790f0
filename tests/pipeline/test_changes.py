"""Rebuilds without --force see what changed: a data file by content, the package's code a task
runs; and nothing else reruns."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from nbmlops import storage
from nbmlops.layout import Layout
from nbmlops.registry.loading import load_version
from nbmlops.registry.store import Store
from nbmlops.spec import FeatureSpec
from tests.conftest import PROJECT, copy_project, patients_env, ploomber_build
from tests.helpers import breast_cancer_frame
from tests.pipeline.test_build import ran_tasks

pytestmark = [pytest.mark.pipeline, pytest.mark.xdist_group("changes")]
ENV = "env.patients.yaml"
#: What follows the candidates' training: the comparison and everything it feeds.
AFTER_TRAINING = {"evaluate", "score", "monitor", "index"}


def test_rebuilds_rerun_exactly_what_a_change_affects(tmp_path):
    project = copy_project(tmp_path / "project")
    # The build runs a copy of the package, so the test can edit its code.
    shutil.copytree(PROJECT / "src" / "nbmlops", project / "src" / "nbmlops",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    breast_cancer_frame().to_csv(project / "patients.csv", index=False)
    env = project / ENV
    env.write_text(patients_env(project))
    declared = {f"train-{c['name']}" for c in Layout.from_env(env).candidates}
    every = {"ingest", "quality", "features", *declared, *AFTER_TRAINING}

    def build() -> tuple[set[str], str]:
        done = ploomber_build(project, env_file=ENV, PYTHONPATH=str(project / "src"))
        out = done.stdout + done.stderr
        assert done.returncode == 0, out[-3000:]
        return {name for name, did in ran_tasks(done.stdout).items() if did}, out

    assert build()[0] == every
    assert build()[0] == set()  # nothing changed
    data = project / "patients.csv"
    stat = data.stat()
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert build()[0] == set()  # touched: same bytes, nothing to redo

    drift = project / "src" / "nbmlops" / "monitoring" / "drift.py"
    drift.write_text(drift.read_text() + "\n# reviewed\n")
    ran, out = build()
    assert ran == {"evaluate", "score", "monitor", "index"}  # its importers and what follows
    assert re.search(r"\] monitor: ran in [\d.]+ s \(its inputs changed: "
                     r"src/nbmlops/monitoring/drift\.py\)", out), out  # fmt: skip

    index = project / "src" / "nbmlops" / "reports" / "index.py"
    index.write_text(index.read_text() + "\n# reviewed\n")
    assert build()[0] == {"index"}

    data.write_text(data.read_text().replace("benign", "benign ", 1))  # one label, one byte
    ran, out = build()
    assert ran == every and "ingest: ran in" in out
    assert "(its inputs changed: patients.csv)" in out

    # A derived feature, one line in the project's own file: the build reruns from ingest, the
    # models see the new column, and the input columns alone score (as a request carries them)
    features = project / "features" / "patients.py"
    features.write_text(features.read_text().replace(
        'rows.assign(area_per_perimeter=rows["mean_area"] / rows["mean_perimeter"])',
        'rows.assign(area_per_perimeter=rows["mean_area"] / rows["mean_perimeter"],\n'
        '                       texture_per_smoothness=rows["mean_texture"]'
        ' / rows["mean_smoothness"])'))  # fmt: skip
    assert build()[0] == every
    products = Path(Layout.from_env(env).env["products"])
    spec = FeatureSpec.read(products / "data" / "features.json")
    assert "texture_per_smoothness" in spec.model_numeric
    assert "texture_per_smoothness" not in spec.columns
    best = storage.read_json(products / "models" / "best.json")
    model = load_version(Store.from_params(Layout.from_env(env).env["mlflow"]),
                         str(best["version"]))  # as the service loads it  # fmt: skip
    holdout = pd.read_parquet(products / "data" / "holdout.parquet")
    proba = model.predict_proba(holdout[spec.columns])[:, 1]  # no derived column given
    assert roc_auc_score(holdout[spec.target], proba) == pytest.approx(best["holdout"]["roc_auc"])

    # A user's modelling, as the env file declares it: one line adds a candidate, changing its
    # parameters retrains it alone, deleting it removes it from the comparison.
    def candidates(change) -> None:
        values = yaml.safe_load(env.read_text())
        change(values["candidates"])
        env.write_text(yaml.safe_dump(values, sort_keys=False))

    extra = {"estimator": "sklearn.ensemble.ExtraTreesClassifier",
             "params": {"n_estimators": 20, "min_samples_leaf": 5, "n_jobs": 1}}  # fmt: skip
    candidates(lambda block: block.update({"extra-trees": extra}))
    assert build()[0] == {"train-extra-trees", *AFTER_TRAINING}
    models = Path(Layout.from_env(env).env["products"]) / "models"
    assert (models / "extra-trees.pkl").is_file() and (models / "extra-trees.json").is_file()
    compared = storage.read_json(Layout.from_env(env).reports / "metrics.json")["candidates"]
    assert "extra-trees" in compared and len(compared) == len(declared) + 1

    candidates(lambda block: block["extra-trees"]["params"].update(n_estimators=30))
    assert build()[0] == {"train-extra-trees", *AFTER_TRAINING}
    assert storage.read_json(models / "extra-trees.json")["hyperparams"]["n_estimators"] == 30

    candidates(lambda block: block.pop("extra-trees"))
    assert build()[0] == AFTER_TRAINING  # nothing trains; the comparison loses one candidate
    compared = storage.read_json(Layout.from_env(env).reports / "metrics.json")["candidates"]
    assert "extra-trees" not in compared and len(compared) == len(declared)
