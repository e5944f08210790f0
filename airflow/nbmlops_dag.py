"""Airflow DAGs of this pipeline: one DAG per spec file in `specs/` beside this file.

`make export-airflow` (or `make airflow-run`, which runs this very file) writes the spec from the
pipeline itself (`python -m nbmlops.commands.engines airflow`): the DAG's id, the project's folder
and Python on the workers, and every task with its upstream tasks and command. Each task is a
process of its own in the project's folder, `python -m nbmlops.build.task NAME --env ENV`: one
pipeline task, skipped when it is up to date. The edges are the pipeline's. Copy this file and
`specs/` into Airflow's dags folder; every worker needs the project at that folder, and the env
file's products, stores and MLflow store (or MLFLOW_TRACKING_URI) reachable at the same paths.
"""

import json
import shlex
from pathlib import Path

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

for spec_file in sorted((Path(__file__).parent / "specs").glob("*.json")):
    spec = json.loads(spec_file.read_text(encoding="utf-8"))
    with DAG(dag_id=spec["dag_id"], schedule=None, catchup=False,
             start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
             description=f"nbmlops pipeline, {spec['env']}") as dag:  # fmt: skip
        tasks = {
            t["name"]: BashOperator(
                task_id=t["name"],
                bash_command=shlex.join(t["command"]),
                cwd=spec["project"],
                env={
                    "PLOOMBER_STATS_ENABLED": "false",
                    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
                    **spec.get("environment", {}),  # the tracking server, when there is one
                },  # fmt: skip
                append_env=True,
            )
            for t in spec["tasks"]
        }
        for t in spec["tasks"]:
            for upstream in t["upstream"]:
                tasks[upstream] >> tasks[t["name"]]
    globals()[spec["dag_id"].replace("-", "_")] = dag
