"""`make airflow-run`: the pipeline on a real Apache Airflow on this machine, task by task.

    python -m nbmlops.commands.airflowrun --env env.ci.yaml [--venv .airflow/venv] [--home .airflow]

Airflow lives in an environment of its own (`.airflow/venv`, from `airflow/requirements.lock`,
which `make airflow-run` installs), with its metadata in sqlite under `.airflow/home`. The DAG
comes from the pipeline itself (`nbmlops.commands.engines`): one Airflow task per pipeline task,
the pipeline's edges, each task `python -m nbmlops.build.task NAME` in this project's folder
and environment, in a process of its own. Products, the raw store and the MLflow store are the
env file's, shared by every task as they are by `make build`.

`airflow dags test` runs the DAG: one run, its tasks one after another in the pipeline's
order, without a scheduler or web server. Each task's final state comes from Airflow's
database. Prints every task's state and time; exits 1 unless the run succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from .. import storage
from ..errors import ConfigError
from . import engines

DAG_FILE = Path("airflow") / "nbmlops_dag.py"
_FINISHED = re.compile(r"DagRun Finished: dag_id=([^,]+), .*?run_id=([^,]+), .*?state=(\w+)")
_TASK = re.compile(r"\[DAG TEST\] (starting|end) task task_id=(\S+)")
_OURS = re.compile(r"(\S+): (ran|skipped \(up to date\)) in ([\d.]+) s")


def airflow_env(home: Path, dags: Path) -> dict[str, str]:
    """The environment of every Airflow command: its home, this DAG folder, no examples."""
    return os.environ | {"AIRFLOW_HOME": str(home / "home"),
                         "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                         "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}  # fmt: skip


def run(project: Path, env_file: str, venv: Path, home: Path,
        tracking_uri: str | None = None) -> dict:  # fmt: skip
    """One run of the pipeline's DAG for `env_file`: Airflow from `venv`, its database, DAG
    folder and logs in `home`; every task logs to `tracking_uri` (a server) when given, as
    the DAG's spec says, whatever Airflow's own environment holds."""
    airflow = venv / "bin" / "airflow"
    if not airflow.is_file():
        raise ConfigError(f"{airflow}: no Airflow here; `make airflow-run` installs it")
    dags = home / "dags"
    (dags / "specs").mkdir(parents=True, exist_ok=True)
    shutil.copy2(project / DAG_FILE, dags / DAG_FILE.name)
    spec = engines.airflow_spec(project, env_file, tracking_uri=tracking_uri)
    storage.write_json(dags / "specs" / f"{spec['dag_id']}.json", spec)
    env = airflow_env(home, dags)
    migrated = subprocess.run([str(airflow), "db", "migrate"], env=env, capture_output=True,
                              text=True)  # fmt: skip
    if migrated.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{migrated.stderr[-3000:]}")
    log = home / "logs" / f"{spec['dag_id']}-{datetime.now(UTC):%Y%m%dT%H%M%S}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    finished, ours = None, {}
    with log.open("w") as out:
        proc = subprocess.Popen([str(airflow), "dags", "test", spec["dag_id"]], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)  # fmt: skip
        for line in proc.stdout:
            out.write(line)
            if m := _TASK.search(line):
                print(f"  {m[2]}: {'started' if m[1] == 'starting' else 'ended'}", flush=True)
            if m := _OURS.search(line):
                ours[m[1]] = {"outcome": m[2], "task_seconds": float(m[3])}
            if m := _FINISHED.search(line):
                finished = (m[2], m[3])
        proc.wait()
    seconds = time.perf_counter() - start
    if finished is None:
        raise RuntimeError(f"airflow dags test ended without a run (exit {proc.returncode}); "
                           f"see {log}")  # fmt: skip
    run_id, state = finished
    # the CLI prints warnings to stdout, ahead of its JSON
    states = subprocess.run([str(airflow), "tasks", "states-for-dag-run", spec["dag_id"], run_id,
                             "-o", "json"], env=env | {"PYTHONWARNINGS": "ignore"},
                            capture_output=True, text=True)  # fmt: skip
    tasks = {}
    for row in json.loads(states.stdout.strip().splitlines()[-1]):
        began, ended = (datetime.fromisoformat(row[k]) if row.get(k) else None
                        for k in ("start_date", "end_date"))  # fmt: skip
        tasks[row["task_id"]] = {
            "state": row["state"],
            "seconds": round((ended - began).total_seconds(), 1) if began and ended else None,
        } | ours.get(row["task_id"], {"outcome": None, "task_seconds": None})
    return {"dag_id": spec["dag_id"], "run_id": run_id, "state": state, "log": str(log),
            "seconds": round(seconds, 1), "tasks": tasks}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="env.yaml", help="env file (default env.yaml)")
    parser.add_argument("--venv", type=Path, default=Path(".airflow/venv"),
                        help="Airflow's environment (default .airflow/venv)")  # fmt: skip
    parser.add_argument("--home", type=Path, default=Path(".airflow"),
                        help="its database, DAG folder and logs (default .airflow)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        result = run(Path.cwd().resolve(), args.env, args.venv.absolute(), args.home.resolve(),
                     os.environ.get("MLFLOW_TRACKING_URI"))  # fmt: skip
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"\nAirflow DAG {result['dag_id']}, run {result['run_id']}: {result['state']} "
          f"in {result['seconds']} s (log: {result['log']})")  # fmt: skip
    print(f"  {'task':<16} {'state':<16} {'Airflow s':>9} {'task s':>7}  outcome")
    for name, t in result["tasks"].items():
        print(f"  {name:<16} {t['state']:<16} {t['seconds'] or '':>9} {t['task_seconds'] or '':>7}"
              f"  {t['outcome'] or ''}")  # fmt: skip
    return 0 if result["state"] == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
