"""One pipeline task in a process of its own, as an engine (Airflow, Argo Workflows) runs them.

    python -m nbmlops.build.task NAME --env env.ci.yaml [--force]

Run in the project's folder. It decides as `make build` does whether the task is up to date:
Ploomber's own record (its notebook, its parameters, its upstream products) and the inputs
Ploomber does not track (`nbmlops.build.inputs`: a data source, contract, batch file or module
of this package that changed since the task last ran). An up-to-date task is skipped; a task
that ran has its inputs recorded, under a lock of their own, since tasks of one engine run
finish at the same time. A failure prints the package's own message, as `make build` does, and
exits 1; the task's products stay as the last good run left them (every write is atomic).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from ..locking import ProjectLock

#: What the engine reads in the last line of a task's output.
RAN, SKIPPED = "ran", "skipped (up to date)"


def run_task(name: str, env_file: str, force: bool = False) -> str:
    """Build task `name` of the pipeline in the current folder with `env_file`; RAN or SKIPPED."""
    os.environ.setdefault("PLOOMBER_STATS_ENABLED", "false")
    from ploomber.constants import TaskStatus
    from ploomber.spec import DAGSpec

    from ..ploombercompat import mark_stale, render_again
    from .inputs import Inputs
    from .kernels import restart_dead_kernels

    restart_dead_kernels()
    dag = DAGSpec("pipeline.yaml", env=env_file).to_dag()
    dag.render(force=force, show_progress=False)
    if name not in dag:
        from ..errors import ConfigError

        raise ConfigError(f"pipeline.yaml has no task {name!r}; its tasks: {', '.join(dag)}")
    task = dag[name]
    record = getattr(dag.executor, "inputs", None)
    inputs = Inputs(dag, record) if record else None
    changed = inputs.changed().get(name) if inputs and not force else None
    if changed is not None and task.exec_status == TaskStatus.Skipped:
        files = ", ".join(changed[:3]) or "no record of what it read when it last ran"
        print(f"{name}: its inputs changed: {files}", flush=True)
        mark_stale(task)
        render_again(dag, force)
    if task.exec_status == TaskStatus.Skipped and not force:
        return SKIPPED
    task.build(force=force)
    if inputs is not None:
        with ProjectLock(Path(record).with_suffix(".lock"), wait_seconds=60, what="engine task"):
            inputs.record([name])
    return RAN


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="the task's name in pipeline.yaml")
    parser.add_argument("--env", default="env.yaml", help="env file (default env.yaml)")
    parser.add_argument("--force", action="store_true", help="run it even when up to date")
    args = parser.parse_args(argv)
    from ..errors import PipelineError

    start = time.perf_counter()
    try:
        outcome = run_task(args.name, args.env, args.force)
    except PipelineError as exc:
        print(f"error: {args.name}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - Ploomber wraps a task's error in its own
        from .run import clear_message

        found = clear_message(str(exc))
        print(f"error: {args.name}: {found[1] if found else exc}", file=sys.stderr)
        return 1
    print(f"{args.name}: {outcome} in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
