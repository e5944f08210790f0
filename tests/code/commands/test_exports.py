"""Exports to other engines, made from the pipeline's own DAG (nbmlops.commands.engines): an Argo
Workflows Workflow, checked against Argo's own models (hera, generated from Argo's OpenAPI
spec), and the Airflow DAG's spec; a real Airflow runs it in tests/pipeline/test_airflow.py."""

import json
import py_compile
import subprocess
from pathlib import Path, PurePosixPath

import pytest
import yaml

from tests.conftest import BIN, PROJECT, copy_project, patients_env, run_env


def _pipeline(project, env_file="env.ci.yaml"):
    """Task name -> upstream names, from the pipeline itself."""
    from ploomber.spec import DAGSpec

    dag = DAGSpec(str(project / "pipeline.yaml"), env=str(project / env_file)).to_dag()
    return {name: sorted(dag[name].upstream) for name in dag}


def argo_problems(doc: dict) -> list[str]:
    """Why Argo would refuse `doc`: its own models, strict (an unknown or misspelt key is an
    error, as Argo's server rejects it), then what a schema cannot say (every template and
    dependency named exists)."""
    from hera.workflows.models import Workflow
    from pydantic import ValidationError

    if (doc.get("apiVersion"), doc.get("kind")) != ("argoproj.io/v1alpha1", "Workflow"):
        return ["apiVersion/kind: not an argoproj.io/v1alpha1 Workflow"]
    try:
        Workflow.model_validate(doc, extra="forbid", by_alias=True, by_name=False)
    except ValidationError as exc:
        return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    templates = {t.get("name") for t in doc["spec"]["templates"]}
    problems = [] if doc["spec"]["entrypoint"] in templates else ["entrypoint: no such template"]
    for t in doc["spec"]["templates"]:
        tasks = {task["name"] for task in (t.get("dag") or {}).get("tasks", [])}
        for task in (t.get("dag") or {}).get("tasks", []):
            if task["template"] not in templates:
                problems.append(f"{task['name']}: no template {task['template']!r}")
            problems += [f"{task['name']}: no task {d!r}" for d in task.get("dependencies", [])
                         if d not in tasks]  # fmt: skip
    return problems


def _export_argo(project, env_file="env.ci.yaml", *args, **environ):
    env = {k: v for k, v in run_env(env_file).items() if k != "MLFLOW_TRACKING_URI"} | environ
    done = subprocess.run([str(BIN / "python"), "-m", "nbmlops.commands.engines", "argo", "--env",
                           env_file, *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    return done


def _mount_of(workflow, local: Path, project: Path) -> dict:
    """The volume mount under which the pods find `local`, a folder of this machine."""
    container = workflow["spec"]["templates"][1]["container"]
    there = (PurePosixPath("/project") / local.relative_to(project)
             if local.is_relative_to(project) else PurePosixPath(local))  # fmt: skip
    found = [m for m in container["volumeMounts"]
             if there == PurePosixPath(m["mountPath"]) or PurePosixPath(m["mountPath"]) in
             there.parents]  # fmt: skip
    assert len(found) == 1, f"{local} ({there}) is not on the shared volume exactly once"
    return found[0]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp("export") / "project")


def test_argo_workflow_is_valid_for_argo_and_runs_every_task_as_the_pipeline_does(project):
    done = _export_argo(project, "env.ci.yaml", "--image", "registry.example/nbmlops:1")
    assert done.returncode == 0, done.stderr[-3000:]
    workflow = yaml.safe_load((project / "argo" / "nbmlops-ci.yaml").read_text())
    assert argo_problems(workflow) == []
    spec = workflow["spec"]
    dag = {t["name"]: t for t in spec["templates"]}[spec["entrypoint"]]["dag"]["tasks"]
    assert {t["name"]: sorted(t["dependencies"]) for t in dag} == _pipeline(project)
    container = spec["templates"][1]["container"]
    from nbmlops.commands.engines import task_command

    for t in dag:  # each task's command, once Argo fills in the parameter
        (value,) = [p["value"] for p in t["arguments"]["parameters"] if p["name"] == "task"]
        command = [c.replace("{{inputs.parameters.task}}", value) for c in container["command"]]
        assert command == task_command("python", t["name"], "env.ci.yaml")
    assert spec["arguments"]["parameters"][0] == {
        "name": "image",
        "value": "registry.example/nbmlops:1",
    }
    # every folder the pipeline writes is on the shared volume, at the place the pods look
    from nbmlops.envfile import load_env

    env = load_env(project / "env.ci.yaml")
    written = [env[k] for k in ("products", "reports", "raw_store", "scored_store")]
    written += [env["serving"]["archive"], env["mlflow"]["artifact_root"],
                env["mlflow"]["tracking_uri"].removeprefix("sqlite:///")]  # fmt: skip
    for folder in written:
        mount = _mount_of(workflow, Path(folder), project)
        assert (Path(folder).relative_to(project).as_posix() + "/").startswith(mount["subPath"])
    assert spec["parallelism"] == 1  # sqlite on a shared volume: one task at a time


def test_argo_workflow_with_a_tracking_server_shares_no_mlflow_folder(project):
    done = _export_argo(project, "env.ci.yaml", "--image", "r/n:2", "--claim", "team-pvc",
                        MLFLOW_TRACKING_URI="http://mlflow.mlops.svc:5000")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    workflow = yaml.safe_load((project / "argo" / "nbmlops-ci.yaml").read_text())
    assert argo_problems(workflow) == []
    spec = workflow["spec"]
    assert "parallelism" not in spec  # the three candidates train at once, as locally
    assert spec["volumes"] == [
        {"name": "shared", "persistentVolumeClaim": {"claimName": "team-pvc"}}
    ]
    mounts = [m["mountPath"] for m in spec["templates"][1]["container"]["volumeMounts"]]
    assert "/project/mlruns" not in mounts and "/project/products/ci" in mounts
    assert {"name": "tracking-uri", "value": "http://mlflow.mlops.svc:5000"} in spec[
        "arguments"]["parameters"]  # fmt: skip


def test_argo_workflow_of_a_users_project_with_a_store_outside_it(project, tmp_path):
    """A user's env (patients CSV, its own names) with the raw store on a mounted disk."""
    text = (patients_env(project)
            .replace('raw_store: "{{here}}/data/raw/patients"', 'raw_store: "/mnt/lake/raw"')
            .replace('scored_store: "{{here}}/data/scored/patients"',
                     'scored_store: "{{here}}/../shared/scored"'))  # fmt: skip
    assert "/mnt/lake/raw" in text and "../shared/scored" in text
    (project / "env.patients.yaml").write_text(text)
    done = _export_argo(project, "env.patients.yaml", "--image", "r/n:3")
    assert done.returncode == 0, done.stderr[-3000:]
    workflow = yaml.safe_load((project / "argo" / "nbmlops-patients.yaml").read_text())
    assert argo_problems(workflow) == []
    assert workflow["metadata"]["generateName"] == "nbmlops-patients-"
    assert _mount_of(workflow, Path("/mnt/lake/raw"), project) == {
        "name": "shared",
        "mountPath": "/mnt/lake/raw",
        "subPath": "outside/mnt/lake/raw",
    }
    assert _mount_of(workflow, project / "products/patients", project)["subPath"] == (
        "products/patients")  # fmt: skip
    mounts = workflow["spec"]["templates"][1]["container"]["volumeMounts"]
    # beside the project here, beside the image's project in the pods
    assert {"name": "shared", "mountPath": "/shared/scored",
            "subPath": "outside/shared/scored"} in mounts  # fmt: skip
    command = workflow["spec"]["templates"][1]["container"]["command"]
    assert command[-2:] == ["--env", "env.patients.yaml"]


def test_the_argo_check_refuses_what_argo_would(project):
    """The check above can fail: a misspelt key, a wrong type, a dependency on no task."""
    done = _export_argo(project, "env.ci.yaml", "--image", "r/n:1")
    assert done.returncode == 0, done.stderr[-3000:]
    good = yaml.safe_load((project / "argo" / "nbmlops-ci.yaml").read_text())
    typo = json.loads(json.dumps(good))
    typo["spec"]["templates"][1]["contaner"] = typo["spec"]["templates"][1].pop("container")
    assert any("contaner" in p for p in argo_problems(typo))
    wrong = json.loads(json.dumps(good))
    wrong["spec"]["templates"][0]["dag"]["tasks"][1]["dependencies"] = "ingest"
    assert any("dependencies" in p for p in argo_problems(wrong))
    orphan = json.loads(json.dumps(good))
    orphan["spec"]["templates"][0]["dag"]["tasks"][1]["dependencies"] = ["ingestt"]
    assert argo_problems(orphan) == ["quality: no task 'ingestt'"]


def test_argo_export_refuses_what_pods_could_not_use(project):
    """A tracking server on this machine's loopback (no pod reaches it), and a store whose
    folder is the project itself (its volume would hide the image's code)."""
    done = _export_argo(project, "env.ci.yaml", "--image", "r/n:1",
                        MLFLOW_TRACKING_URI="http://127.0.0.1:5005")  # fmt: skip
    assert done.returncode == 2 and "loopback, which no pod reaches" in done.stderr
    text = (project / "env.ci.yaml").read_text().replace(
        'tracking_uri: "sqlite:///{{here}}/mlruns/mlflow.db"',
        'tracking_uri: "sqlite:///{{here}}/mlflow.db"')  # fmt: skip
    (project / "env.rootdb.yaml").write_text(text)
    done = _export_argo(project, "env.rootdb.yaml", "--image", "r/n:1")
    assert done.returncode == 2 and "would hide the image's code" in done.stderr
    assert not (project / "argo" / "nbmlops-rootdb.yaml").exists()


def test_argo_export_without_an_image_says_what_to_set(project):
    done = _export_argo(project, "env.ci.yaml")
    assert done.returncode == 2 and "IMAGE=" in done.stderr


def test_the_image_holds_the_project_where_the_workflow_runs_it_and_none_of_its_products():
    from nbmlops.commands.engines import IMAGE_PROJECT, written_folders

    lines = (PROJECT / "Dockerfile").read_text().splitlines()
    assert f"WORKDIR {IMAGE_PROJECT}" in lines
    ignored = [line.strip().rstrip("/") for line in (PROJECT / ".dockerignore").read_text()
               .splitlines() if line.strip() and not line.startswith("#")]  # fmt: skip
    for env_file in ("env.yaml", "env.ci.yaml"):
        for folder in written_folders(PROJECT, env_file, None):
            rel = folder.relative_to(PROJECT)
            assert any(
                part.match(pattern)
                for part in (rel, *rel.parents)
                if part.parts
                for pattern in ignored
            ), f"{rel} would be copied into the image"


def test_airflow_export_writes_the_spec_the_dag_file_reads(project):
    env = run_env("env.ci.yaml") | {"MLFLOW_TRACKING_URI": "http://mlflow.example:5000"}
    done = subprocess.run([str(BIN / "python"), "-m", "nbmlops.commands.engines", "airflow",
                           "--env", "env.ci.yaml", "--project", "/srv/nbmlops", "--python",
                           "/srv/nbmlops/.venv/bin/python"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    spec = json.loads((project / "airflow" / "specs" / "nbmlops-ci.json").read_text())
    assert spec["project"] == "/srv/nbmlops" and spec["dag_id"] == "nbmlops-ci"
    assert spec["environment"] == {"MLFLOW_TRACKING_URI": "http://mlflow.example:5000"}
    assert {t["name"]: t["upstream"] for t in spec["tasks"]} == _pipeline(project)
    assert all(t["command"][0] == "/srv/nbmlops/.venv/bin/python" for t in spec["tasks"])
    dag_file = PROJECT / "airflow" / "nbmlops_dag.py"
    py_compile.compile(str(dag_file), doraise=True)
    text = dag_file.read_text()
    assert '/ "specs").glob("*.json")' in text and '**spec.get("environment", {})' in text


def test_the_engine_task_list_is_the_pipelines_graph(tmp_path):
    """What `make airflow-run` gives Airflow: every task of the given project's pipeline (not
    the current folder's) with its upstream tasks, each run alone by the task runner; one DAG
    id per env file."""
    from nbmlops.commands import engines

    project = copy_project(tmp_path / "project")
    (project / "env.patients.yaml").write_text(patients_env(project))  # only in the copy
    spec = engines.airflow_spec(project, "env.patients.yaml", python="/env/bin/python")
    assert spec["dag_id"] == "nbmlops-patients" and spec["project"] == str(project)
    assert {t["name"]: t["upstream"] for t in spec["tasks"]} == _pipeline(
        project, "env.patients.yaml")  # fmt: skip
    for t in spec["tasks"]:
        assert t["command"] == ["/env/bin/python", "-m", "nbmlops.build.task", t["name"],
                                "--env", "env.patients.yaml"]  # fmt: skip
    assert [engines.dag_id(f) for f in ("env.yaml", "env.ci.yaml", "env.my churn.yaml")] == [
        "nbmlops", "nbmlops-ci", "nbmlops-my-churn"]  # fmt: skip
