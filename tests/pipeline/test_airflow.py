"""The CI sample on a real Apache Airflow, task by task (`make airflow-run`), against a local build.

Airflow is installed as `make airflow-run` installs it, into its own environment
(`.airflow/venv`, from `airflow/requirements.lock`); each run here has a database of its own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from nbmlops.commands import airflowrun
from nbmlops.layout import Layout
from tests.conftest import BIN, PROJECT, copy_project, run_env

pytestmark = [pytest.mark.pipeline, pytest.mark.xdist_group("build")]

VENV = PROJECT / ".airflow" / "venv"


@pytest.fixture(scope="module")
def airflow_venv() -> Path:
    done = subprocess.run(["make", ".airflow/venv/.ready"], cwd=PROJECT, capture_output=True,
                          text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return VENV


def _decisions(project: Path) -> dict:
    """What a build decided, without paths or times: data hashes, each candidate's metrics, the
    registered version and the champion, the scored rows' archive (named by their hash: every
    probability the served model and the challenger gave) and each batch's monitoring verdict.

    Not the candidates' model files: the gradient boosting records the OpenMP threads it was
    fitted with (one per task in a parallel build, every core for a task run alone), and a
    pickle's bytes also depend on its objects' sharing; the trees and probabilities are equal.
    """
    products, reports = project / "products" / "ci", project / "reports" / "ci"

    def read(path: Path) -> dict:
        return json.loads(path.read_text(encoding="utf-8"))

    layout = Layout.from_env(project / "env.ci.yaml")
    candidates = {c["name"]: {k: read(layout.candidate_product(c["name"], "metrics"))[k]
                              for k in ("train", "hyperparams")}
                  for c in layout.candidates}  # fmt: skip
    best = read(products / "models" / "best.json")
    shadow = read(products / "scoring" / "shadow.json")
    tests = read(reports / "monitoring" / "tests.json")
    return {
        "data": read(products / "data" / "manifest.json")["sha256"],
        "candidates": candidates,
        "best": {k: best[k] for k in ("model", "version", "sha256", "holdout")},
        "served": (shadow["champion"], shadow["challenger"], Path(shadow["scored_file"]).name),
        "monitoring": [(b["batch"], b["status"], b["drift_share"]) for b in tests["batches"]],
    }


def test_the_pipeline_on_airflow_decides_as_a_local_build(ci_build, airflow_venv, tmp_path):
    """A run of the DAG equals a local build; a task that fails leaves its products as the
    last good run left them, its downstream tasks do not run, and the next run completes,
    skipping what is up to date."""
    project = copy_project(tmp_path / "project")
    shutil.copytree(PROJECT / "airflow", project / "airflow",
                    ignore=shutil.ignore_patterns("specs"))  # fmt: skip
    home = tmp_path / "airflow"
    result = airflowrun.run(project, "env.ci.yaml", airflow_venv, home)
    states = {name: t["state"] for name, t in result["tasks"].items()}
    assert result["state"] == "success", (states, result["log"])
    graph = json.loads(next((home / "dags" / "specs").glob("*.json")).read_text())["tasks"]
    assert set(states) == {t["name"] for t in graph} and set(states.values()) == {"success"}
    assert {t["outcome"] for t in result["tasks"].values()} == {"ran"}  # each in its process
    assert _decisions(project) == _decisions(ci_build.project)

    notebook = project / "notebooks" / "monitor.py"
    good = notebook.read_text(encoding="utf-8")
    notebook.write_text(good.replace("# %%\nfrom pathlib import Path", "# %%\nraise RuntimeError"
                                     "('broken on purpose')\n\n# %%\nfrom pathlib import Path"),
                        encoding="utf-8")  # fmt: skip
    monitoring = project / "reports" / "ci" / "monitoring"
    kept = {p: p.read_bytes() for p in (monitoring / "tests.json", monitoring / "index.html")}
    failed = airflowrun.run(project, "env.ci.yaml", airflow_venv, home)
    tasks = failed["tasks"]
    assert failed["state"] == "failed" and tasks["monitor"]["state"] == "failed"
    assert tasks["index"]["state"] == "upstream_failed"
    upstream = set(tasks) - {"monitor", "index"}
    assert {tasks[n]["outcome"] for n in upstream} == {"skipped (up to date)"}
    assert all(p.read_bytes() == data for p, data in kept.items())  # as the last good run left

    notebook.write_text(good, encoding="utf-8")
    again = airflowrun.run(project, "env.ci.yaml", airflow_venv, home)
    assert again["state"] == "success" and again["run_id"] != failed["run_id"]
    assert {again["tasks"][n]["outcome"] for n in upstream} == {"skipped (up to date)"}
    assert _decisions(project) == _decisions(ci_build.project)


def test_a_users_project_on_airflow_and_another_share_one_registry_server(
        airflow_venv, registry_server, tmp_path, monkeypatch):  # fmt: skip
    """A user's own project (the patients CSV: string labels, daily dates) runs on Airflow while
    the CI sample builds locally, both registering into one MLflow server on PostgreSQL at the
    same time. Then promotion, the service's hot hand-off and a rollback of the user's model
    all go through that server, and neither project keeps a local MLflow store."""
    import threading
    import time

    from nbmlops.registry.runs import MODEL_NAME_TAG, register_candidate
    from nbmlops.registry.store import Store
    from nbmlops.registry.versions import CHALLENGER, CHAMPION, alias_version, list_versions
    from tests.code.serving.server import Server
    from tests.conftest import patients_env, ploomber_build
    from tests.helpers import breast_cancer_frame

    uri = registry_server.uri
    env_file = "env.patients.yaml"
    patients = copy_project(tmp_path / "patients")
    shutil.copytree(PROJECT / "airflow", patients / "airflow",
                    ignore=shutil.ignore_patterns("specs"))  # fmt: skip
    breast_cancer_frame().to_csv(patients / "patients.csv", index=False)
    (patients / "incoming").mkdir()
    (patients / env_file).write_text(patients_env(patients))
    flights = copy_project(tmp_path / "flights")
    other = {}
    second = threading.Thread(target=lambda: other.update(
        done=ploomber_build(flights, MLFLOW_TRACKING_URI=uri)))  # fmt: skip
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the tasks have it from the spec
    second.start()
    result = airflowrun.run(patients, env_file, airflow_venv, tmp_path / "airflow", uri)
    second.join(900)
    assert "done" in other, "the local build of the CI sample did not finish"
    done = other["done"]
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    states = {name: t["state"] for name, t in result["tasks"].items()}
    assert result["state"] == "success", (states, result["log"])
    assert result["dag_id"] == "nbmlops-patients" and len(states) == 10
    assert not (flights / "mlruns").exists() and not (patients / "mlruns").exists()

    def on_server(model: str) -> Store:
        return Store(uri, str(registry_server.home / "artifacts"), model)

    theirs, ci = on_server("patients"), on_server("flight-delay-ci")
    best = json.loads((patients / "products/patients/models/best.json").read_text())
    assert alias_version(theirs, CHALLENGER) == str(best["version"])
    assert alias_version(ci, CHALLENGER) is not None
    client = theirs.client()
    for store in (theirs, ci):  # each version's runs are its own project's
        for version in list_versions(store)["version"]:
            run = client.get_run(client.get_model_version(store.model_name, str(version)).run_id)
            assert run.data.tags[MODEL_NAME_TAG] == store.model_name
    card = (patients / "reports/patients/models" / f"v{best['version']}.md").read_text()
    assert card.startswith(f"# Model card: patients v{best['version']}")

    def models(*args: str) -> subprocess.CompletedProcess:
        """`nbmlops-models` in the patients project, on the server."""
        return subprocess.run([str(BIN / "nbmlops-models"), "--env", env_file, *args],
                              cwd=patients, env=run_env() | {"MLFLOW_TRACKING_URI": uri},
                              capture_output=True, text=True, timeout=300)  # fmt: skip

    first = models("promote")  # no baseline yet: the held-out gate alone
    assert first.returncode == 0, first.stdout + first.stderr
    champion = alias_version(theirs, CHAMPION)
    assert champion == str(best["version"])
    build = client.get_run(client.get_model_version("patients", champion).run_id).data.tags
    newer = register_candidate(theirs, build["build_id"],
                               next(c["name"] for c in Layout.from_env(
                                   patients / env_file).candidates
                                    if c["name"] != build["candidate"]))  # fmt: skip
    with Server(patients, env_file=env_file, latency_budget_ms=2000,
                environ={"MLFLOW_TRACKING_URI": uri}) as server:  # fmt: skip
        assert server.get("/models").json()["serving"]["champion"] == champion

        def serving_after(*args: str) -> str:
            done = models(*args)
            assert done.returncode == 0, done.stdout + done.stderr
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                now = server.get("/models").json()["serving"]["champion"]
                if now != champion:
                    return now
                time.sleep(0.2)
            raise AssertionError(f"the service still serves v{champion} after {args}")

        assert serving_after("promote", newer, "--force") == newer  # hot hand-off
        champion = newer
        assert serving_after("rollback") == str(best["version"])
    baseline = json.loads((patients / "model" / "baseline.patients.json").read_text())
    assert str(baseline["version"]) == str(best["version"])
