"""Exports to other engines (soopervisor): an Argo Workflows spec and an Airflow DAG."""

import json
import py_compile
import shutil
import subprocess

import jsonschema
import pytest
import yaml

from tests.conftest import BIN, PROJECT, copy_project, run_env

EXPORT_FILES = ["soopervisor.yaml", "airflow"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A copy of the project, committed to git as soopervisor expects, exported both ways."""
    project = copy_project(tmp_path_factory.mktemp("export") / "project")
    for name in EXPORT_FILES:
        src = PROJECT / name
        if src.is_dir():
            ignore = shutil.ignore_patterns("*.json", "*.yaml", "Dockerfile")
            shutil.copytree(src, project / name, ignore=ignore)
        else:
            shutil.copy2(src, project / name)
    shutil.copy2(project / "requirements.lock", project / "requirements.lock.txt")
    for target in ("argo", "airflow"):  # as the make targets do
        (project / target).mkdir(exist_ok=True)
        shutil.copy2(PROJECT / "Dockerfile", project / target / "Dockerfile")
    git = ["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci"]
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run([*git, "add", "-A"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "export"], cwd=project, check=True)
    env = run_env("env.ci.yaml")
    for target in ("argo", "airflow"):
        done = subprocess.run(
            [str(BIN / "soopervisor"), "export", target, "--skip-docker", "--mode", "force"],
            cwd=project, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return project


def _pipeline(project):
    """Task name -> upstream names, from the pipeline itself."""
    from ploomber.spec import DAGSpec

    dag = DAGSpec(str(project / "pipeline.yaml"), env=str(project / "env.ci.yaml")).to_dag()
    return {name: sorted(dag[name].upstream) for name in dag}


def test_argo_spec_matches_its_schema_and_names_every_task(exported):
    spec = yaml.safe_load((exported / "argo.yaml").read_text())
    schema = json.loads((PROJECT / "tests/code/schemas/argo-workflow-subset.json").read_text())
    jsonschema.validate(spec, schema)
    templates = {t["name"]: t for t in spec["spec"]["templates"]}
    assert spec["spec"]["entrypoint"] in templates
    tasks = templates[spec["spec"]["entrypoint"]]["dag"]["tasks"]
    found = {t["name"]: sorted(t.get("dependencies", [])) for t in tasks}
    assert found == _pipeline(exported)
    assert all(t["template"] in templates for t in tasks)
    assert "ploomber task" in templates[tasks[0]["template"]]["script"]["source"]


def test_airflow_dag_compiles_and_names_every_task(exported):
    dag_file = exported / "airflow" / "nbmlops_dag.py"
    py_compile.compile(str(dag_file), doraise=True)
    (spec_file,) = (exported / "airflow").glob("*.json")
    spec = json.loads(spec_file.read_text())
    found = {t["name"]: sorted(t["upstream"]) for t in spec["tasks"]}
    assert found == _pipeline(exported)
    assert all(t["command"].startswith(f"ploomber task {t['name']} ") for t in spec["tasks"])


def test_the_engine_task_list_is_the_pipelines_graph(tmp_path, monkeypatch):
    """What `make airflow-run` gives Airflow: every task with the pipeline's upstream tasks,
    each run alone by the task runner; one DAG id per env file."""
    from nbmlops.tools import engines

    project = copy_project(tmp_path / "project")
    monkeypatch.chdir(project)
    spec = engines.airflow_spec(project, "env.ci.yaml", python="/env/bin/python")
    assert spec["dag_id"] == "nbmlops-ci" and spec["project"] == str(project)
    assert {t["name"]: t["upstream"] for t in spec["tasks"]} == _pipeline(project)
    for t in spec["tasks"]:
        assert t["command"] == ["/env/bin/python", "-m", "nbmlops.build.task", t["name"],
                                "--env", "env.ci.yaml"]  # fmt: skip
    assert [engines.dag_id(f) for f in ("env.yaml", "env.ci.yaml", "env.my churn.yaml")] == [
        "nbmlops", "nbmlops-ci", "nbmlops-my-churn"]  # fmt: skip
