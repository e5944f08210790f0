"""Three datasets that are not flights, each through `nbmlops init` then a build with no edit in
between, built in one folder beside the flights sample; no build reruns or touches another."""

from __future__ import annotations

import subprocess

import pytest

from nbmlops import storage
from nbmlops.envfile import load_env
from nbmlops.registry.store import Store
from nbmlops.registry.versions import list_versions
from tests.conftest import BIN, copy_project, ploomber_build, run_env
from tests.helpers import breast_cancer_frame, credit_frame, sensor_frame
from tests.pipeline.test_build import ran_tasks

pytestmark = [pytest.mark.pipeline, pytest.mark.xdist_group("init")]

#: name -> (write the file, init's arguments after the name)
DATASETS = {
    "patients": (lambda p: breast_cancer_frame().to_csv(p / "data" / "patients.csv", index=False),
                 ["--source", "data/patients.csv", "--target", "diagnosis",
                  "--positive", "malignant", "--time", "visit_date"]),
    "loans": (lambda p: credit_frame().to_csv(p / "data" / "loans.csv", sep=";", index=False,
                                              encoding="utf-8-sig"),
              ["--source", "data/loans.csv", "--target", "default"]),
    "sensors": (lambda p: sensor_frame().to_parquet(p / "data" / "sensors.parquet"),
                ["--source", "data/sensors.parquet", "--target", "high", "--time", "taken_at"]),
}  # fmt: skip
#: Rewritten by every build on purpose (who holds the lock); not a product.
VOLATILE = "build.lock"


def state(project, env_file: str) -> dict[str, str]:
    """sha256 of every file of one project's folders, and its registered versions."""
    env = load_env(project / env_file)
    files = {}
    for key in ("products", "reports", "raw_store", "scored_store"):
        for path in sorted(p for p in (project / env[key]).rglob("*") if p.is_file()):
            if path.name != VOLATILE:
                files[str(path.relative_to(project))] = storage.sha256_file(path)
    store = Store.from_params(env["mlflow"])
    files["registry"] = list_versions(store).to_json()
    return files


def test_init_then_build_three_datasets_beside_flights_and_none_touches_another(tmp_path):
    project = copy_project(tmp_path / "project")
    (project / "data").mkdir(exist_ok=True)
    envs = {}
    for name, (write, args) in DATASETS.items():
        write(project)
        done = subprocess.run([str(BIN / "nbmlops"), "init", name, *args], cwd=project,
                              env=run_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"next: make build ENV={name}" in done.stdout
        envs[name] = f"env.{name}.yaml"
    envs["flights"] = "env.ci.yaml"

    states = {}
    for name, env_file in envs.items():
        done = ploomber_build(project, env_file=env_file)
        assert done.returncode == 0, f"{name}: " + (done.stdout + done.stderr)[-3000:]
        assert all(ran_tasks(done.stdout).values()), name
        for other in states:  # an earlier project, untouched by this build
            assert state(project, envs[other]) == states[other], f"{name} touched {other}"
        states[name] = state(project, env_file)
        metrics = storage.read_json(
            project / load_env(project / env_file)["reports"] / "metrics.json"
        )
        assert metrics["candidates"][metrics["best"]]["roc_auc"] > 0.6, name
        assert all(row["status"] == "pass" for row in metrics["gate"]), name

    for name, env_file in envs.items():  # every project again: nothing to do, nothing changed
        done = ploomber_build(project, env_file=env_file)
        assert done.returncode == 0 and not any(ran_tasks(done.stdout).values()), name
    assert {name: state(project, env_file) for name, env_file in envs.items()} == states

    front = (project / "reports" / "index.html").read_text(encoding="utf-8")
    for name in ("patients", "loans", "sensors", "ci"):
        assert f'href="{name}/index.html"' in front
    monitoring = (project / "reports" / "loans" / "monitoring" / "index.html").read_text()
    assert "control" not in monitoring.lower()  # no control batches here, so no words on them
