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
#: The threadpoolctl API each variable limits.
POOLS = {"OMP_NUM_THREADS": "openmp", "OPENBLAS_NUM_THREADS": "blas", "MKL_NUM_THREADS": "blas"}
#: BLAS stays at one thread per task: its calls here are small (a logistic regression, evidently's
#: statistics), and a second thread cost more than it gave. Full year on 2 cores, medians of 2:
#: every pool at the plan's threads 71.6 s, OpenMP only 66.4 s, one thread everywhere 67.1 s.
BLAS_THREADS = 1


class BuildLocked(DAGBuildError):
    """Another build of the same project holds the lock."""


class BuildLock(ProjectLock):
    """The project lock, raising what Ploomber reports as a failed build."""

    locked_error = BuildLocked


class LockedParallel(Parallel):
    """Ploomber's parallel executor that first takes the project's build lock.

    Holding it, it removes what an interrupted build left half-written in `sweep` folders, then
    reruns every task whose inputs changed since it last ran (`inputs`, the record of them).
    Each task runs with `threads_per_task` threads (`auto`: thread_plan, the cores divided by
    the tasks that run at once with it), unless OMP_NUM_THREADS or the like is set.
    """

    def __init__(self, lock_file: str, wait_seconds: float = 0.0, sweep=(),
                 threads_per_task="auto", inputs: str | None = None, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.lock = BuildLock(lock_file, wait_seconds)
        self.sweep = list(sweep)
        self.threads_per_task = threads_per_task
        self.inputs = inputs

    def __call__(self, dag, show_progress):
        with self.lock:
            forced = _build_forced()
            if self.lock.waited:  # the other build changed products: decide again what is stale
                _render_again(dag, forced)
            removed = sweep_partial_writes(self.sweep)
            if removed:
                print(f"removed {len(removed)} partial writes of an interrupted build", flush=True)
            if self.inputs is None:
                return self._run(dag, show_progress)
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
                return self._run(dag, show_progress)
            finally:
                inputs.record([n for n in dag if dag[n].exec_status == TaskStatus.Executed])

    def _run(self, dag, show_progress):
        """Ploomber's parallel build, each task given its share of the cores when it runs."""
        free = [n for n in THREAD_VARIABLES if n not in os.environ]  # a user's own setting wins
        if not free:
            return super().__call__(dag, show_progress)
        waiting = {
            TaskStatus.WaitingExecution,
            TaskStatus.WaitingDownload,
            TaskStatus.WaitingUpstream,
        }
        graph = {n: set(dag[n].upstream) for n in dag}
        plan = thread_plan(graph, {n for n in dag if dag[n].exec_status in waiting},
                           os.cpu_count() or 1, self.processes, self.threads_per_task)  # fmt: skip
        if plan:
            shares = ", ".join(f"{n} {t}" for n, t in plan.items())
            print(f"OpenMP threads per task (cores ÷ tasks that run at once; BLAS "
                  f"{BLAS_THREADS}): {shares}", flush=True)  # fmt: skip
        for name, threads in plan.items():
            dag[name]._build = Budgeted(dag[name], threads, free)
        try:
            return super().__call__(dag, show_progress)
        finally:
            for name in plan:
                dag[name].__dict__.pop("_build", None)


def thread_plan(graph: dict[str, set[str]], running: set[str], cores: int, processes: int,
                fixed: int | str | None = "auto") -> dict[str, int]:  # fmt: skip
    """Threads for each task of `running`: the cores divided by the tasks that can run at once
    with it (itself and every other task of `running` neither upstream nor downstream of it,
    at most `processes`), or `fixed` threads when it is a number."""

    def reach(name: str, edges: dict[str, set[str]]) -> set[str]:
        seen, todo = set(), list(edges.get(name, ()))
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo += edges.get(node, ())
        return seen

    downstream: dict[str, set[str]] = {n: set() for n in graph}
    for name, ups in graph.items():
        for up in ups:
            downstream.setdefault(up, set()).add(name)
    plan = {}
    for name in sorted(running):
        if isinstance(fixed, int) and not isinstance(fixed, bool):
            plan[name] = fixed
            continue
        related = reach(name, graph) | reach(name, downstream)
        together = min(processes, 1 + len(running - related - {name}))
        plan[name] = max(1, cores // together)
    return plan


class Budgeted:
    """A task's build with its threads: the OpenMP pool of this worker process limited to them,
    BLAS to BLAS_THREADS (ploomber-engine runs the notebook here), and the same variables set
    for a Jupyter kernel it starts (papermill); the worker's own settings come back after."""

    def __init__(self, task, threads: int, variables=THREAD_VARIABLES):
        self.task, self.threads, self.variables = task, threads, list(variables)

    def __call__(self, **kwargs):
        from threadpoolctl import threadpool_limits

        threads = {
            n: self.threads if POOLS[n] == "openmp" else BLAS_THREADS for n in self.variables
        }
        before = {n: os.environ.get(n) for n in self.variables}
        os.environ.update({n: str(t) for n, t in threads.items()})
        limits = {POOLS[n]: t for n, t in threads.items()}
        try:
            with threadpool_limits(limits=limits):
                return type(self.task)._build(self.task, **kwargs)
        finally:
            for name, value in before.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


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


def locked_parallel(lock_file: str, wait_seconds: float = 0.0, sweep=(), threads_per_task="auto",
                    inputs: str | None = None, **kwargs) -> LockedParallel:  # fmt: skip
    """The executor `pipeline.yaml` names (a dotted path to a function, as Ploomber expects)."""
    return LockedParallel(lock_file, wait_seconds, sweep, threads_per_task, inputs, **kwargs)
