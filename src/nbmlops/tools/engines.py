"""The pipeline on an engine: its tasks and edges, read from the Ploomber DAG that `ploomber build`
runs, so the engine's graph cannot drift from the pipeline's.

    python -m nbmlops.tools.engines airflow --env env.ci.yaml [--out airflow]

writes `airflow/<dag id>.json`: the DAG's id, the project folder, the project's Python and, for
each task, its upstream tasks and its command, `python -m nbmlops.build.task NAME --env ENV`
(one task in a process of its own, skipped when up to date). `airflow/nbmlops_dag.py` turns
every such file in its folder into an Airflow DAG.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .. import storage


def task_graph(env_file: str) -> dict[str, list[str]]:
    """Task -> its upstream tasks, of the pipeline in the current folder with `env_file`."""
    from ploomber.spec import DAGSpec

    dag = DAGSpec("pipeline.yaml", env=env_file).to_dag()
    return {name: sorted(dag[name].upstream) for name in dag}


def task_command(python: str, name: str, env_file: str) -> list[str]:
    """The command that runs task `name` alone, as every engine runs it."""
    return [python, "-m", "nbmlops.build.task", name, "--env", env_file]


def dag_id(env_file: str) -> str:
    """`nbmlops-ci` for env.ci.yaml, `nbmlops` for env.yaml: one DAG per env file."""
    stem = Path(env_file).name.removeprefix("env").removesuffix(".yaml").strip(".")
    return "nbmlops" + (f"-{re.sub(r'[^A-Za-z0-9_-]', '-', stem)}" if stem else "")


def airflow_spec(project: Path, env_file: str, python: str = sys.executable) -> dict:
    """What `airflow/nbmlops_dag.py` builds an Airflow DAG from."""
    graph = task_graph(env_file)
    return {"dag_id": dag_id(env_file), "project": str(project), "env": env_file,
            "tasks": [{"name": name, "upstream": up, "command": task_command(python, name,
                                                                             env_file)}
                      for name, up in graph.items()]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engine", choices=["airflow"])
    parser.add_argument("--env", default="env.yaml", help="env file (default env.yaml)")
    parser.add_argument("--out", type=Path, default=Path("airflow"))
    args = parser.parse_args(argv)
    spec = airflow_spec(Path.cwd().resolve(), args.env)
    path = args.out / f"{spec['dag_id']}.json"
    storage.write_json(path, spec)
    print(f"{path}: DAG {spec['dag_id']}, {len(spec['tasks'])} tasks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
