"""One build at a time per project: Ploomber's parallel executor behind an exclusive file lock.

`pipeline.yaml` names `locked_parallel` as its executor, so the lock is taken by `ploomber build`
(and `make build`) only, not by `ploomber status`, JupyterLab or single-task runs. The lock is an
`flock` on an open file: the kernel releases it when the build's processes end, however they end
(a SIGKILLed build never leaves a stale lock behind).
"""

from __future__ import annotations

import inspect
import os

from ploomber.constants import TaskStatus
from ploomber.exceptions import DAGBuildError
from ploomber.executors import Parallel

from ..locking import ProjectLock
from ..storage import sweep_partial_writes
from .inputs import Inputs

#: Thread pools of OpenMP (HistGradientBoosting) and BLAS (LogisticRegression) read these.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class BuildLocked(DAGBuildError):
    """Another build of the same project holds the lock."""


class BuildLock(ProjectLock):
    """The project lock, raising what Ploomber reports as a failed build."""

    locked_error = BuildLocked


class LockedParallel(Parallel):
    """Ploomber's parallel executor that first takes the project's build lock.

    Holding it, it removes what an interrupted build left half-written in `sweep` folders, then
    reruns every task whose inputs changed since it last ran (`inputs`, the record of them).
    """

    def __init__(self, lock_file: str, wait_seconds: float = 0.0, sweep=(),
                 threads_per_task=None, inputs: str | None = None, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.lock = BuildLock(lock_file, wait_seconds)
        self.sweep = list(sweep)
        self.threads_per_task = threads_per_task
        self.inputs = inputs

    def __call__(self, dag, show_progress):
        if self.threads_per_task:  # several tasks at once, each with every core, oversubscribe
            for name in THREAD_VARIABLES:
                os.environ.setdefault(name, str(self.threads_per_task))
        with self.lock:
            forced = _build_forced()
            if self.lock.waited:  # the other build changed products: decide again what is stale
                _render_again(dag, forced)
            removed = sweep_partial_writes(self.sweep)
            if removed:
                print(f"removed {len(removed)} partial writes of an interrupted build", flush=True)
            if self.inputs is None:
                return super().__call__(dag, show_progress)
            inputs = Inputs(dag, self.inputs)
            changed = {} if forced else inputs.changed()
            stale = [n for n in changed if dag[n].exec_status == TaskStatus.Skipped]
            for name in stale:
                files = changed[name]
                more = f" and {len(files) - 3} more" if len(files) > 3 else ""
                why = f"its inputs changed: {', '.join(files[:3])}{more}" if files else (
                    "no record of what it read when it last ran")  # fmt: skip
                print(f"{name}: {why}", flush=True)
                dag[name].product.metadata.delete()  # Ploomber now sees it, and downstream, stale
            if stale:
                _render_again(dag, forced)
            try:
                return super().__call__(dag, show_progress)
            finally:
                inputs.record([n for n in dag if dag[n].exec_status == TaskStatus.Executed])


def _render_again(dag, forced: bool) -> None:
    """Decide afresh what is stale, forgetting the status Ploomber cached when it rendered."""
    dag._clear_metadata()
    dag.render(force=forced, show_progress=False)


def _build_forced() -> bool:
    """The `force` of the `DAG.build` that called this executor (Ploomber does not pass it on)."""
    frame = inspect.currentframe()
    while frame is not None:
        if frame.f_code.co_name == "_build" and "force" in frame.f_locals:
            return bool(frame.f_locals["force"])
        frame = frame.f_back
    return False


def locked_parallel(lock_file: str, wait_seconds: float = 0.0, sweep=(), threads_per_task=None,
                    inputs: str | None = None, **kwargs) -> LockedParallel:  # fmt: skip
    """The executor `pipeline.yaml` names (a dotted path to a function, as Ploomber expects)."""
    return LockedParallel(lock_file, wait_seconds, sweep, threads_per_task, inputs, **kwargs)
