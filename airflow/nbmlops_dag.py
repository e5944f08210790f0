"""Airflow DAG of this pipeline: one pod per Ploomber task, in the pipeline's order.

`make export-airflow` writes the task list beside this file (<project>.json: the image and
each task's command and upstream tasks). Copy both files into Airflow's dags folder.
"""

import json
from pathlib import Path

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

from airflow import DAG

SPEC_FILE = next(Path(__file__).parent.glob("*.json"))
SPEC = json.loads(SPEC_FILE.read_text())

dag = DAG(
    dag_id=f"nbmlops-{SPEC_FILE.stem}",
    description="nbmlops pipeline, exported by soopervisor",
    schedule=None,
    catchup=False,
)

for task in SPEC["tasks"]:
    KubernetesPodOperator(
        task_id=task["name"],
        name=f"nbmlops-{task['name']}",
        image=SPEC["image"],
        cmds=["bash", "-cx"],
        arguments=[task["command"]],
        dag=dag,
        do_xcom_push=False,
    )

for task in SPEC["tasks"]:
    for upstream in task["upstream"]:
        dag.get_task(task["name"]).set_upstream(dag.get_task(upstream))
