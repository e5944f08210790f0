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

from nbmlops.tools import airflowrun
from tests.conftest import PROJECT, copy_project

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

    candidates = {p.stem: {k: read(p)[k] for k in ("train", "hyperparams")}
                  for p in sorted((products / "models").glob("*-*.json"))}  # fmt: skip
    best = read(products / "models" / "best.json")
    shadow = read(products / "scoring" / "shadow.json")
    tests = read(reports / "monitoring" / "tests.json")
    return {
        "data": read(products / "data" / "manifest.json")["sha256"],
        "candidates": candidates,
        "best": {k: best[k] for k in ("model", "version", "sha256", "holdout")},
        "served": (shadow["champion"], shadow["challenger"], Path(shadow["archive"]).name),
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
