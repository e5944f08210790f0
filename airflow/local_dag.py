"""Airflow DAGs of this pipeline on one machine: one DAG per spec file in `local/` beside this file.

`make airflow-run` writes the spec (`python -m nbmlops.tools.engines airflow`): the DAG's id,
the project's folder and Python, and every task with its upstream tasks and command. Each task
is a process of its own in the project's folder, `python -m nbmlops.build.task NAME --env ENV`:
one pipeline task, skipped when it is up to date. The edges are the pipeline's.
"""

import json
import shlex
from pathlib import Path

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

for spec_file in sorted((Path(__file__).parent / "local").glob("*.json")):
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
                },  # fmt: skip
                append_env=True,
            )
            for t in spec["tasks"]
        }
        for t in spec["tasks"]:
            for upstream in t["upstream"]:
                tasks[upstream] >> tasks[t["name"]]
    globals()[spec["dag_id"].replace("-", "_")] = dag
