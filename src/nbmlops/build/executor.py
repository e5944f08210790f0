"""One build at a time per project: Ploomber's parallel executor behind an exclusive file lock.

`pipeline.yaml` names `locked_parallel` as its executor, so the lock is taken by `ploomber build`
(and `make build`) only, not by `ploomber status`, JupyterLab or single-task runs. The lock is an
`flock` on an open file: the kernel releases it when the build's processes end, however they end
(a SIGKILLed build never leaves a stale lock behind).
"""

from __future__ import annotations

import inspect
import os
import resource
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

from ploomber.constants import TaskStatus
from ploomber.exceptions import DAGBuildError
from ploomber.executors import Parallel
from ploomber.executors.abc import Executor
from ploomber.executors.parallel import TaskBuildWrapper
from ploomber.messagecollector import BuildExceptionsCollector, Message
from tqdm.auto import tqdm

from ..locking import ProjectLock
from ..storage import read_json, sweep_partial_writes, write_json
from .inputs import Inputs

#: Thread pools of OpenMP (HistGradientBoosting) and BLAS (LogisticRegression) read these.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: The threadpoolctl API each variable limits.
POOLS = {"OMP_NUM_THREADS": "openmp", "OPENBLAS_NUM_THREADS": "blas", "MKL_NUM_THREADS": "blas"}
#: BLAS stays at one thread per task: its calls here are small (a logistic regression, evidently's
#: statistics), and a second thread cost more than it gave. Full year on 2 cores, medians of 2:
#: every pool at the plan's threads 71.6 s, OpenMP only 66.4 s, one thread everywhere 67.1 s.
BLAS_THREADS = 1
#: The nice value of a task that runs at once with `cores` or more tasks expected to take
#: longer: the longest keep a core each, the shorter share what is left. Full year on 2 cores,
#: the three candidates at once (medians of 2): 28.8 s at equal priority, 24.2 s so.
LOWER_PRIORITY = 10
#: Where the build keeps each task's CPU seconds of its last run, beside the inputs record.
SECONDS_RECORD = ".cpu-seconds.json"


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
    the tasks that run at once with it), unless OMP_NUM_THREADS or the like is set. Where more
    tasks run at once than there are cores, those the last build measured as shorter run at a
    lower CPU priority (priority_plan), so the longest are not slowed by sharing a core.
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
            return self._schedule(dag, show_progress)
        waiting = {
            TaskStatus.WaitingExecution,
            TaskStatus.WaitingDownload,
            TaskStatus.WaitingUpstream,
        }
        graph = {n: set(dag[n].upstream) for n in dag}
        running = {n for n in dag if dag[n].exec_status in waiting}
        cores = os.cpu_count() or 1
        plan = thread_plan(graph, running, cores, self.processes, self.threads_per_task)
        record = Path(self.inputs).with_name(SECONDS_RECORD) if self.inputs else None
        nice = priority_plan(graph, running, cores, self.processes, read_seconds(record))
        if plan:
            shares = ", ".join(f"{n} {t}" for n, t in plan.items())
            print(f"OpenMP threads per task (cores ÷ tasks that run at once; BLAS "
                  f"{BLAS_THREADS}): {shares}", flush=True)  # fmt: skip
        if nice:
            print(f"lower CPU priority (shorter, at its last run, than {cores} tasks that run "
                  f"at once with it): {', '.join(nice)}", flush=True)  # fmt: skip
        for name, threads in plan.items():
            dag[name]._build = Budgeted(dag[name], threads, free, nice.get(name, 0), record)
        try:
            return self._schedule(dag, show_progress)
        finally:
            for name in plan:
                dag[name].__dict__.pop("_build", None)

    def _schedule(self, dag, show_progress):
        """Each task whose upstream is done, on `processes` worker processes, as Ploomber's
        Parallel runs them, except that the build waits for a task to end rather than asking
        again at once: Ploomber's loop never pauses, and keeps one core busy for the whole
        build (full year on 2 cores: 56 s of CPU in the build process of a 60 s build)."""
        Executor.__call__(self, dag)  # the statuses a build may start from
        ready = {TaskStatus.WaitingExecution, TaskStatus.WaitingDownload}
        final = {TaskStatus.Executed, TaskStatus.Errored, TaskStatus.Aborted}
        todo = [n for n in dag if dag[n].exec_status != TaskStatus.Skipped]
        bar = tqdm(total=len(todo)) if show_progress else None
        started: dict = {}  # future -> task, in the order they started
        running: set = set()
        failures: list[Message] = []
        context = get_context(self.start_method)
        try:
            with ProcessPoolExecutor(max_workers=self.processes, mp_context=context) as pool:
                while True:
                    for task in dag.values():  # topological order
                        if task.exec_status in ready and task not in started.values():
                            future = pool.submit(TaskBuildWrapper(task), catch_exceptions=True)
                            started[future] = task
                            running.add(future)
                    if not running:
                        break
                    finished, running = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        task = started[future]
                        try:
                            outcome = future.result()
                        except BrokenProcessPool as exc:
                            task.exec_status = TaskStatus.BrokenProcessPool
                            raise BrokenProcessPool(f"Broken pool {task}") from exc
                        if isinstance(outcome, Message):
                            failures.append(outcome)
                            task.exec_status = TaskStatus.Errored  # aborts what follows
                        else:
                            task.product.metadata.update_locally(outcome[1])
                            task.exec_status = TaskStatus.Executed
                    if bar is not None:
                        bar.update(sum(dag[n].exec_status in final for n in todo) - bar.n)
        finally:
            if bar is not None:
                bar.close()
        if failures:
            raise DAGBuildError(str(BuildExceptionsCollector(failures)))
        return [future.result()[0] for future in started]  # Ploomber's build report


def _peers(graph: dict[str, set[str]], running: set[str]) -> dict[str, set[str]]:
    """For each task of `running`, the others of `running` that can run at once with it:
    neither upstream nor downstream of it."""

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
    return {n: running - reach(n, graph) - reach(n, downstream) - {n} for n in sorted(running)}


def thread_plan(graph: dict[str, set[str]], running: set[str], cores: int, processes: int,
                fixed: int | str | None = "auto") -> dict[str, int]:  # fmt: skip
    """Threads for each task of `running`: the cores divided by the tasks that can run at once
    with it (itself and every other task of `running` neither upstream nor downstream of it,
    at most `processes`), or `fixed` threads when it is a number."""
    if isinstance(fixed, int) and not isinstance(fixed, bool):
        return dict.fromkeys(sorted(running), fixed)
    return {n: max(1, cores // min(processes, 1 + len(others)))
            for n, others in _peers(graph, running).items()}  # fmt: skip


def priority_plan(graph: dict[str, set[str]], running: set[str], cores: int, processes: int,
                  seconds: dict[str, float]) -> dict[str, int]:  # fmt: skip
    """LOWER_PRIORITY for each task of `running` that can run at once with more tasks than
    there are cores, `cores` of which took longer (`seconds`: CPU seconds at their last run).

    The longest keep a core each and the shorter share the rest, so the group ends with its
    longest task rather than later. A task or peer with no measure leaves the task at the
    normal priority, as does every task of a first build; a lower priority only yields CPU
    time while a longer task wants it, so a wrong measure costs little.
    """
    plan = {}
    for name, others in _peers(graph, running).items():
        if min(processes, 1 + len(others)) <= cores or name not in seconds:
            continue
        if any(o not in seconds for o in others):
            continue
        longer = sum((seconds[o], o) > (seconds[name], name) for o in others)
        if longer >= cores:
            plan[name] = LOWER_PRIORITY
    return plan


def read_seconds(record: Path | None) -> dict[str, float]:
    """Each task's CPU seconds at its last run in a build, from `record` ({} when none)."""
    if record is None or not record.is_file():
        return {}
    try:
        found = read_json(record)
    except ValueError:  # a record from an interrupted write of an older version: measure again
        return {}
    return {str(k): float(v) for k, v in found.items() if isinstance(v, int | float)}


def _record_seconds(record: Path, name: str, seconds: float) -> None:
    """Keep `seconds` for task `name`; tasks finish in worker processes of their own."""
    with ProjectLock(record.with_suffix(".lock"), wait_seconds=60, what="task seconds"):
        write_json(record, read_seconds(record) | {name: round(seconds, 3)})


def _cpu_seconds() -> float:
    """CPU seconds of this process and of the children it has waited for (a Jupyter kernel)."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


class Budgeted:
    """A task's build with its threads: the OpenMP pool of this worker process limited to them,
    BLAS to BLAS_THREADS (ploomber-engine runs the notebook here), and the same variables set
    for a Jupyter kernel it starts (papermill); the worker's own settings come back after.

    With a `nice` value the build runs in a thread of its own at that priority (on Linux a
    thread's nice value is its own, and what it starts inherits it), so the worker process
    goes on at its own priority for the next task: an unprivileged process cannot raise its
    priority again. Elsewhere the build runs at the worker's priority. A build that succeeds
    records its CPU seconds in `record`.
    """

    def __init__(self, task, threads: int, variables=THREAD_VARIABLES, nice: int = 0,
                 record: Path | None = None):  # fmt: skip
        self.task, self.threads, self.variables = task, threads, list(variables)
        self.nice, self.record = nice, record

    def __call__(self, **kwargs):
        start = _cpu_seconds()
        if self.nice and sys.platform.startswith("linux"):
            result = _in_thread(lambda: self._build(kwargs, self.nice))
        else:
            result = self._build(kwargs)
        if self.record is not None:
            _record_seconds(self.record, self.task.name, _cpu_seconds() - start)
        return result

    def _build(self, kwargs: dict, nice: int = 0):
        from threadpoolctl import threadpool_limits

        if nice:  # relative to the worker's own (a build started with `nice` stays lower)
            thread = threading.get_native_id()
            own = os.getpriority(os.PRIO_PROCESS, thread)
            os.setpriority(os.PRIO_PROCESS, thread, min(19, own + nice))
        threads = {
            n: self.threads if POOLS[n] == "openmp" else BLAS_THREADS for n in self.variables
        }
        before = {n: os.environ.get(n) for n in self.variables}
        os.environ.update({n: str(t) for n, t in threads.items()})
        limits = {POOLS[n]: t for n, t in threads.items()}
        try:  # OpenMP's limit is the calling thread's own: set where the build runs
            with threadpool_limits(limits=limits):
                return type(self.task)._build(self.task, **kwargs)
        finally:
            for name, value in before.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _in_thread(call):
    """`call()` in a new thread, its result or its exception here. The thread is a daemon: a
    worker stopped mid-build (Ctrl-C) does not wait for it."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="nbmlops-task", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


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
