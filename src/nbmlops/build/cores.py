"""Each task's share of the cores and its CPU priority while the build runs.

A task gets the cores divided by the tasks that run at once with it (`thread_plan`), for its
OpenMP pool and the kernel papermill starts (`Budgeted`, in the worker); where more tasks run
at once than there are cores, those the last build measured shorter run at a lower priority
(`priority_plan`), from the CPU seconds each task took (`read_seconds`).
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

from .. import ploombercompat as ploomber
from ..locking import ProjectLock
from ..storage import read_json, write_json

#: Thread pools of OpenMP (HistGradientBoosting) and BLAS (LogisticRegression) read these.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: The threadpoolctl API each variable limits.
POOLS = {"OMP_NUM_THREADS": "openmp", "OPENBLAS_NUM_THREADS": "blas", "MKL_NUM_THREADS": "blas"}
#: BLAS stays at one thread per task: its calls here are small (a logistic regression, evidently's
#: statistics), and a second thread cost more than it gave. Full year on 2 cores, medians of 2:
#: every pool at the plan's threads 71.6 s, OpenMP only 66.4 s, one thread everywhere 67.1 s.
BLAS_THREADS = 1
#: The nice value of a task that runs at once with `cores` or more tasks that took longer at
#: the last build: the longest keep a core each, the shorter share what is left. Full year on
#: 2 cores, the three candidates at once, each a process (medians of 2): 28.8 s at equal
#: priority, 24.2 s with the logistic regression (1.2 s of CPU against 3.0 and 15.6) at 10.
LOWER_PRIORITY = 10
#: Where the build keeps each task's CPU seconds of its last run, beside the inputs record.
SECONDS_RECORD = ".cpu-seconds.json"


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


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity (a container's cpuset sets it),
    else every core of the machine."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _cpu_seconds() -> float:
    """CPU seconds of this process and of the children it has waited for (a Jupyter kernel)."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


class Budgeted:
    """A task's build with its threads: the OpenMP pool of this worker process limited to them,
    BLAS to BLAS_THREADS (ploomber-engine runs the notebook here), and the same variables set
    for a Jupyter kernel it starts (papermill); the worker's own settings come back after.
    A build that succeeds records its CPU seconds in `record`."""

    def __init__(self, task, threads: int, variables=THREAD_VARIABLES,
                 record: Path | None = None):  # fmt: skip
        self.task, self.threads, self.variables = task, threads, list(variables)
        self.record = record

    def __call__(self, **kwargs):
        from threadpoolctl import threadpool_limits

        start = _cpu_seconds()
        threads = {
            n: self.threads if POOLS[n] == "openmp" else BLAS_THREADS for n in self.variables
        }
        before = {n: os.environ.get(n) for n in self.variables}
        os.environ.update({n: str(t) for n, t in threads.items()})
        limits = {POOLS[n]: t for n, t in threads.items()}
        try:
            with threadpool_limits(limits=limits):
                result = ploomber.build_task(self.task, **kwargs)
        finally:
            for name, value in before.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        if self.record is not None:
            try:  # the task's products are made: a measure not kept must not fail it
                _record_seconds(self.record, self.task.name, _cpu_seconds() - start)
            except Exception as exc:  # noqa: BLE001 - any failure to keep a measure
                print(f"{self.task.name}: its CPU seconds were not kept ({exc})", flush=True)
        return result
