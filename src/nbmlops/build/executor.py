"""One build at a time per project: Ploomber's parallel executor behind an exclusive file lock.

`pipeline.yaml` names `locked_parallel` as its executor, so the lock is taken by `ploomber build`
(and `make build`) only, not by `ploomber status`, JupyterLab or single-task runs. The lock is an
`flock` on an open file: the kernel releases it when the build's processes end, however they end
(a SIGKILLed build never leaves a stale lock behind).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

from ploomber.constants import TaskStatus
from ploomber.exceptions import DAGBuildError
from ploomber.executors import Parallel

from .. import ploombercompat as ploomber
from .. import session
from ..locking import ProjectLock
from ..storage import sweep_partial_writes
from .cores import (
    BLAS_THREADS,
    LOWER_PRIORITY,
    SECONDS_RECORD,
    THREAD_VARIABLES,
    Budgeted,
    available_cores,
    priority_plan,
    read_seconds,
    thread_plan,
)
from .inputs import Inputs
from .kernels import restart_dead_kernels


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
        self.record = Path(inputs).with_name(SECONDS_RECORD) if inputs else None
        self.cores = available_cores()

    def __call__(self, dag, show_progress):
        with self.lock:
            forced = ploomber.build_forced()
            if self.lock.waited:  # the other build changed products: decide again what is stale
                ploomber.render_again(dag, forced)
            removed = sweep_partial_writes(self.sweep)
            if removed:
                session.say(f"removed {len(removed)} partial writes of an interrupted build")
            self.why = {}
            if self.inputs is None:
                return self._run(dag, show_progress)
            inputs = Inputs(dag, self.inputs)
            changed = {} if forced else inputs.changed()
            stale = [n for n in changed if dag[n].exec_status == TaskStatus.Skipped]
            for name in stale:
                files = [_shown(f) for f in changed[name]]
                why = f"its inputs changed: {_some(files)}" if files else (
                    "no record of what it read when it last ran")  # fmt: skip
                self.why[name] = why
                ploomber.mark_stale(dag[name])  # and downstream
            if stale:
                ploomber.render_again(dag, forced)
            try:
                return self._run(dag, show_progress)
            finally:
                inputs.record([n for n in dag if dag[n].exec_status == TaskStatus.Executed])

    def _run(self, dag, show_progress):
        """Ploomber's parallel build, each task given its share of the cores when it runs."""
        free = [n for n in THREAD_VARIABLES if n not in os.environ]  # a user's own setting wins
        if not free:
            return self._schedule(dag, show_progress, {})
        waiting = {
            TaskStatus.WaitingExecution,
            TaskStatus.WaitingDownload,
            TaskStatus.WaitingUpstream,
        }
        graph = {n: set(dag[n].upstream) for n in dag}
        running = {n for n in dag if dag[n].exec_status in waiting}
        plan = thread_plan(graph, running, self.cores, self.processes, self.threads_per_task)
        seconds = read_seconds(self.record)
        nice = priority_plan(graph, running, self.cores, self.processes, seconds)
        if plan and "OMP_NUM_THREADS" in free:
            shares = ", ".join(f"{n} {t}" for n, t in plan.items())
            print(f"OpenMP threads per task (cores ÷ tasks that run at once; BLAS "
                  f"{BLAS_THREADS}): {shares}", flush=True)  # fmt: skip
        if nice:
            print(f"lower CPU priority (shorter, at its last run, than {self.cores} tasks that "
                  f"run at once with it): {', '.join(nice)}", flush=True)  # fmt: skip
        for name, threads in plan.items():
            ploomber.wrap_build(dag[name], Budgeted(dag[name], threads, free, self.record))
        try:
            return self._schedule(dag, show_progress, nice)
        finally:
            for name in plan:
                ploomber.unwrap_build(dag[name])

    def _schedule(self, dag, show_progress, nice: dict[str, int]):
        """Each task whose upstream is done, on at most `processes` worker processes, as
        Ploomber's Parallel runs them, except that the build waits for a task to end rather
        than asking again at once: Ploomber's loop never pauses, and keeps one core busy for
        the whole build (full year on 2 cores: 56 s of CPU in the build process of a 60 s
        build). The tasks of `nice` run in workers of their own, started first (before this
        process has other threads to fork with) at LOWER_PRIORITY: an unprivileged process
        cannot take its priority back, so a shared worker would keep it for the tasks after."""
        ploomber.start_statuses(self, dag)
        ready = {TaskStatus.WaitingExecution, TaskStatus.WaitingDownload}
        final = {TaskStatus.Executed, TaskStatus.Errored, TaskStatus.Aborted}
        todo = [n for n in dag if dag[n].exec_status != TaskStatus.Skipped]
        why = {n: self._why(dag, n, set(todo)) for n in todo}
        for name in dag:
            if name not in why:
                session.say(f"{name}: skipped (up to date)")
        context = get_context(self.start_method)
        low = [n for n in todo if nice.get(n)]
        pools = {"low": _started_pool(min(len(low), self.processes), context)} if low else {}
        pools["normal"] = ProcessPoolExecutor(max_workers=self.processes, mp_context=context,
                                              initializer=_worker, initargs=(0,))  # fmt: skip
        started: dict = {}  # future -> task, in the order they started
        began: dict = {}  # task name -> when it started
        running: set = set()
        failures: list = []  # Ploomber's record of each failure
        broken: list[str] = []
        done: list[str] = []

        def settle(future) -> None:
            task = started[future]
            seconds = time.monotonic() - began[task.name]
            try:
                outcome = future.result()
            except BrokenProcessPool:  # a worker died, and every task its pool was running
                task.exec_status = TaskStatus.BrokenProcessPool
                broken.append(task.name)
                said = "stopped: its worker process died"
            else:
                if ploomber.failed(outcome):
                    failures.append(outcome)
                    task.exec_status = TaskStatus.Errored  # aborts what follows
                    said = "failed"
                else:
                    ploomber.keep_metadata(task, outcome)
                    task.exec_status = TaskStatus.Executed
                    said = "ran"
            done.append(task.name)
            session.say(f"[{len(done)}/{len(todo)}] {task.name}: {said} in {seconds:.1f} s "
                        f"({why[task.name]})")  # fmt: skip

        try:
            while not broken:
                for task in dag.values():  # topological order
                    if len(running) >= self.processes:
                        break
                    if task.exec_status not in ready or task in started.values():
                        continue
                    pool = pools["low" if task.name in low else "normal"]
                    future = pool.submit(ploomber.task_job(task), catch_exceptions=True)
                    started[future] = task
                    began[task.name] = time.monotonic()
                    running.add(future)
                if not running:
                    break
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    settle(future)
                if broken:  # what still runs elsewhere ends as it may, and is recorded
                    for future in wait(running).done:
                        settle(future)
        finally:
            for pool in pools.values():
                pool.shutdown()
        if broken:
            raise BrokenProcessPool(f"the worker pool running {', '.join(broken)} broke: a "
                                    "worker process died (out of memory?)")  # fmt: skip
        if failures:
            raise ploomber.build_error(failures)
        left = [n for n in todo if dag[n].exec_status not in final]
        if left:  # cannot happen while Ploomber passes statuses on; never report it as built
            raise DAGBuildError(f"tasks that never ran: {', '.join(left)}")
        return [future.result()[0] for future in started]  # Ploomber's build report

    def _why(self, dag, name: str, running: set[str]) -> str:
        """Why task `name` runs, in a few words."""
        task = dag[name]
        if name in getattr(self, "why", {}):
            return self.why[name]
        upstream = [n for n in dag if n in running and n in task.upstream]  # in build order
        if upstream:
            return f"after {_some(upstream)}"
        return ploomber.why_outdated(task)


def _some(names: list[str], shown: int = 3) -> str:
    """The first `shown` of `names`, and how many more."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _shown(path: str) -> str:
    """`path` relative to the project folder when it lies in it."""
    found = Path(path)
    return str(found.relative_to(Path.cwd())) if found.is_relative_to(Path.cwd()) else path


def _started_pool(workers: int, context) -> ProcessPoolExecutor:
    """A pool of `workers` processes at LOWER_PRIORITY, started now (a pool that forks starts
    every worker at its first task)."""
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_worker,
                               initargs=(LOWER_PRIORITY,))  # fmt: skip
    pool.submit(os.getpid).result()
    return pool


def _worker(nice: int) -> None:
    """A build's worker process: at `nice` more than the build, its notebooks' kernels started
    again when one exits before it answers (`kernels`)."""
    if nice:
        os.nice(nice)
    restart_dead_kernels()


def _in_jupyter_server() -> bool:
    """Whether this process is a Jupyter server (which makes the DAG to inject a notebook's
    parameters; its kernels run notebooks for a person, not for a build)."""
    import sys

    server = sys.modules.get("jupyter_server.serverapp")
    return bool(server and server.ServerApp.initialized())


def locked_parallel(lock_file: str, wait_seconds: float = 0.0, sweep=(), threads_per_task="auto",
                    inputs: str | None = None, **kwargs) -> LockedParallel:  # fmt: skip
    """The executor `pipeline.yaml` names (a dotted path to a function, as Ploomber expects);
    the grid tasks of the DAG being made get products named by the grid's values."""
    ploomber.name_products_by_value()
    if not _in_jupyter_server():  # Lab makes the DAG to inject parameters: not a build
        session.mark_build()
    return LockedParallel(lock_file, wait_seconds, sweep, threads_per_task, inputs, **kwargs)
