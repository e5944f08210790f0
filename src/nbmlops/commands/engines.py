"""The pipeline on an engine: its tasks and edges, read from the Ploomber DAG that `ploomber build`
runs, so no engine's graph can drift from the pipeline's. Every engine runs each task the same
way, in a process of its own: `python -m nbmlops.build.task NAME --env ENV` (skipped when up to
date).

    python -m nbmlops.commands.engines airflow --env env.yaml [--project DIR] [--python PY]
    python -m nbmlops.commands.engines argo --env env.yaml --image IMAGE [--claim PVC]

`airflow` writes `airflow/specs/<dag id>.json`: the DAG's id, the project's folder and Python on
the Airflow workers, and every task with its upstream tasks and command. `airflow/nbmlops_dag.py`
turns each such file into an Airflow DAG; `make airflow-run` runs that same file.

`argo` writes `argo/<dag id>.yaml`, an Argo Workflows Workflow: one DAG task per pipeline task
in a container of the project's image (`Dockerfile`), and one persistent volume claim mounted
wherever the env file writes (products, reports, the raw and scored stores, the request archive
and, unless `MLFLOW_TRACKING_URI` names a server, the MLflow store), so every pod sees what the
tasks before it wrote. With the MLflow store on that volume (sqlite), tasks run one at a time:
sqlite's locks are not to be trusted on a network volume.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from .. import storage
from ..envfile import load_env
from ..errors import ConfigError
from ..registry.store import is_server_uri

#: Where the image holds the project (Dockerfile's WORKDIR).
IMAGE_PROJECT = PurePosixPath("/project")


def task_graph(project: Path, env_file: str) -> dict[str, list[str]]:
    """Task -> its upstream tasks, of the pipeline in `project` with `env_file` (in it)."""
    from ploomber.spec import DAGSpec

    dag = DAGSpec(str(project / "pipeline.yaml"), env=str(project / env_file)).to_dag()
    return {name: sorted(dag[name].upstream) for name in dag}


def task_command(python: str, name: str, env_file: str) -> list[str]:
    """The command that runs task `name` alone, as every engine runs it."""
    return [python, "-m", "nbmlops.build.task", name, "--env", env_file]


def dag_id(env_file: str) -> str:
    """`nbmlops-ci` for env.ci.yaml, `nbmlops` for env.yaml: one DAG per env file."""
    stem = Path(env_file).name.removeprefix("env").removesuffix(".yaml").strip(".")
    return "nbmlops" + (f"-{re.sub(r'[^A-Za-z0-9_-]', '-', stem)}" if stem else "")


def airflow_spec(project: Path, env_file: str, python: str = sys.executable,
                 worker_project: Path | None = None,
                 tracking_uri: str | None = None) -> dict:  # fmt: skip
    """What `airflow/nbmlops_dag.py` builds an Airflow DAG from, for the pipeline in `project`:
    the project's folder (`worker_project`, default the same) and Python as the workers see
    them, and the tracking server every task logs to (`environment`), when there is one."""
    graph = task_graph(project, env_file)
    project = worker_project or project
    uri = tracking_uri if is_server_uri(tracking_uri) else None
    return {"dag_id": dag_id(env_file), "project": str(project), "env": env_file,
            "environment": {"MLFLOW_TRACKING_URI": uri} if uri else {},
            "tasks": [{"name": name, "upstream": up, "command": task_command(python, name,
                                                                             env_file)}
                      for name, up in graph.items()]}  # fmt: skip


def server_uri(uri: str | None) -> str | None:
    """`uri` when it names a tracking server that pods can reach, None for a store on disk;
    a server on this machine's loopback is an error (no pod reaches it)."""
    if not is_server_uri(uri):
        return None
    host = urlparse(uri).hostname or ""
    if host in {"localhost", "::1"} or host.startswith("127."):
        raise ConfigError(f"MLFLOW_TRACKING_URI={uri} is this machine's loopback, which no pod "
                          "reaches; give the tracking server's address in the cluster")  # fmt: skip
    return uri


def written_folders(project: Path, env_file: str, tracking_uri: str | None) -> list[Path]:
    """The folders the pipeline writes with `env_file`, none inside another: what every task
    of a run on many machines must share. The MLflow store is among them unless
    `tracking_uri` names a server. Paths are not resolved: a link stays where it is."""
    env = load_env(project / env_file)
    serving = env.get("serving") or {}
    paths = [env[k] for k in ("products", "reports", "site", "raw_store", "scored_store")]
    paths += [serving["archive"]] if serving.get("archive") else []
    if not server_uri(tracking_uri):
        mlflow = env["mlflow"]
        uri = mlflow["tracking_uri"]
        if uri.startswith("sqlite:///"):
            paths.append(str(Path(uri.removeprefix("sqlite:///")).parent))
        paths.append(mlflow["artifact_root"].removeprefix("file://"))
    folders = sorted({Path(os.path.normpath(project / p)) for p in paths if p})
    return [f for f in folders if not any(o in f.parents for o in folders)]


def _mount(project: Path, folder: Path) -> dict:
    """`folder` on the shared volume, where the pods find it: the image's project stands for
    this one (so `{{here}}/../x` is `/x` there, and an absolute path stays as it is)."""
    there = PurePosixPath(os.path.normpath(IMAGE_PROJECT / os.path.relpath(folder, project)))
    if there == IMAGE_PROJECT or there in IMAGE_PROJECT.parents:
        raise ConfigError(f"{folder} is written by the pipeline and holds the whole project: "
                          "mounted from the shared volume it would hide the image's code; give "
                          "it a folder of its own in the env file (for a sqlite store, e.g. "
                          '"sqlite:///{{here}}/mlruns/mlflow.db")')  # fmt: skip
    if there.is_relative_to(IMAGE_PROJECT):
        rel = there.relative_to(IMAGE_PROJECT).as_posix()
        return {"name": "shared", "mountPath": str(there), "subPath": rel}
    return {"name": "shared", "mountPath": str(there), "subPath": "outside" + str(there)}


def argo_workflow(project: Path, env_file: str, image: str, claim: str = "nbmlops-shared",
                  tracking_uri: str | None = None) -> dict:  # fmt: skip
    """An Argo Workflows Workflow of the pipeline with `env_file`; see the module docstring."""
    graph = task_graph(project, env_file)
    name = dag_id(env_file)
    tracking_uri = server_uri(tracking_uri)
    mounts = [_mount(project, f) for f in written_folders(project, env_file, tracking_uri)]
    container = {
        "image": "{{workflow.parameters.image}}",
        "command": task_command("python", "{{inputs.parameters.task}}", env_file),
        "workingDir": str(IMAGE_PROJECT),
        "env": [{"name": "MLFLOW_TRACKING_URI", "value": "{{workflow.parameters.tracking-uri}}"},
                {"name": "PLOOMBER_STATS_ENABLED", "value": "false"},
                {"name": "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "value": "false"}],
        "volumeMounts": mounts,
    }  # fmt: skip
    tasks = [{"name": task, "template": "task", "dependencies": up,
              "arguments": {"parameters": [{"name": "task", "value": task}]}}
             for task, up in graph.items()]  # fmt: skip
    spec = {
        "entrypoint": "pipeline",
        "arguments": {"parameters": [{"name": "image", "value": image},
                                     {"name": "tracking-uri", "value": tracking_uri or ""}]},
        "volumes": [{"name": "shared", "persistentVolumeClaim": {"claimName": claim}}],
        "templates": [
            {"name": "pipeline", "dag": {"tasks": tasks}},
            {"name": "task", "inputs": {"parameters": [{"name": "task"}]},
             "container": container},
        ],
    }  # fmt: skip
    if not tracking_uri:  # the MLflow store is a sqlite file on the shared volume
        spec["parallelism"] = 1
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
            "metadata": {"generateName": f"{name}-",
                         "labels": {"app.kubernetes.io/name": "nbmlops"}},
            "spec": spec}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engine", choices=["airflow", "argo"])
    parser.add_argument("--env", default="env.yaml", help="env file (default env.yaml)")
    parser.add_argument("--out", type=Path, help="folder (default airflow/specs or argo)")
    parser.add_argument("--project", help="airflow: the project's folder on the workers "
                        "(default this one)")  # fmt: skip
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="airflow: the project's Python on the workers (default this one)",
    )
    parser.add_argument("--image", help="argo: the image built from Dockerfile (required)")
    parser.add_argument(
        "--claim",
        default="nbmlops-shared",
        help="argo: the persistent volume claim every task mounts",
    )
    args = parser.parse_args(argv)
    project = Path.cwd().resolve()
    uri = os.environ.get("MLFLOW_TRACKING_URI") or None
    if args.engine == "airflow":
        worker = Path(args.project) if args.project else None
        spec = airflow_spec(project, args.env, args.python, worker, uri)
        path = (args.out or Path("airflow/specs")) / f"{spec['dag_id']}.json"
        storage.write_json(path, spec)
        where = spec["environment"].get("MLFLOW_TRACKING_URI") or "the env file's MLflow store"
        print(f"{path}: Airflow DAG {spec['dag_id']}, {len(spec['tasks'])} tasks, "
              f"project {spec['project']}, registry {where}")  # fmt: skip
        return 0
    if not args.image:
        print("error: argo needs --image (make export-argo IMAGE=registry/name:tag)",
              file=sys.stderr)  # fmt: skip
        return 2
    import yaml

    try:
        workflow = argo_workflow(project, args.env, args.image, args.claim, uri)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = (args.out or Path("argo")) / f"{dag_id(args.env)}.yaml"
    storage.write_text(path, yaml.safe_dump(workflow, sort_keys=False, width=100))
    mounts = workflow["spec"]["templates"][1]["container"]["volumeMounts"]
    print(f"{path}: Argo Workflow, {len(workflow['spec']['templates'][0]['dag']['tasks'])} "
          f"tasks, image {args.image}, claim {args.claim} mounted at "
          + ", ".join(m["mountPath"] for m in mounts))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
