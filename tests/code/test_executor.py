"""The build lock: a second holder stops with a message naming the first, or waits for it;
each task's share of the cores."""

import os
import subprocess
import sys
import time

import pytest

from nbmlops.build.executor import Budgeted, BuildLock, BuildLocked, thread_plan

HOLD = """
import sys, time
from nbmlops.build.executor import BuildLock
lock = BuildLock(sys.argv[1]); lock.acquire()
print("held", flush=True); time.sleep(float(sys.argv[2]))
"""


def _holder(path, seconds):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_lock_stops_with_the_holder_named(tmp_path):
    path = tmp_path / "build.lock"
    holder = _holder(path, 30)
    try:
        with pytest.raises(BuildLocked, match=rf"another build .*pid {holder.pid} on "):
            BuildLock(path).acquire()
    finally:
        holder.kill()
        holder.wait()


def test_lock_of_a_killed_holder_is_free_at_once(tmp_path):
    path = tmp_path / "build.lock"
    holder = _holder(path, 30)
    holder.kill()  # SIGKILL: no cleanup runs
    holder.wait()
    with BuildLock(path) as lock:
        assert str(lock.path) == str(path)


def test_waiting_lock_takes_over_when_the_holder_ends(tmp_path, capsys):
    path = tmp_path / "build.lock"
    holder = _holder(path, 1.5)
    start = time.monotonic()
    with BuildLock(path, wait_seconds=60, poll=0.1):
        waited = time.monotonic() - start
    holder.wait()
    assert 0.5 < waited < 60
    assert "waiting for another build" in capsys.readouterr().out


GATE_FAILURE = """\
Executing cell: 3:  50%|#####     | 3/6
\x1b[0;31m---------------------------------------------------------------------------\x1b[0m
Traceback (most recent call last):
  File "/x/ploomber_engine/ipython.py", line 10, in run
nbmlops.registry.gates.GateError: the challenger fails the promotion gates:
 metric baseline  challenger delta        allowed status
roc_auc     None    0.857499  None  [0.5000, inf]   pass
  brier     None    0.173755  None [-inf, 0.0850]   FAIL

ploomber.exceptions.TaskBuildError: Error when executing task 'evaluate'. Partially executed
Need help? https://ploomber.io/community
"""


def test_a_build_failure_of_ours_is_its_message_with_the_task():
    from nbmlops.build.run import clear_message

    task, message = clear_message(GATE_FAILURE)
    assert task == "evaluate"
    assert message.splitlines()[0] == "the challenger fails the promotion gates:"
    assert message.splitlines()[-1].endswith("FAIL") and len(message.splitlines()) == 4
    unexpected = GATE_FAILURE.replace("nbmlops.registry.gates.GateError", "KeyError")
    assert clear_message(unexpected) is None  # anything else: the traceback is shown


# The pipeline's shape: one chain with the candidate grid in the middle.
GRAPH = {"ingest": set(), "validate": {"ingest"}, "features": {"ingest"},
         "train-logreg": {"features"}, "train-hgb": {"features"}, "train-rf": {"features"},
         "evaluate": {"train-logreg", "train-hgb", "train-rf", "validate"},
         "score": {"evaluate"}, "monitor": {"score"}, "index": {"monitor"}}  # fmt: skip


def test_each_task_gets_the_cores_divided_by_the_tasks_that_run_with_it():
    every = set(GRAPH)
    plan = thread_plan(GRAPH, every, cores=2, processes=4)
    assert plan["train-hgb"] == plan["train-rf"] == plan["train-logreg"] == 1  # three at once
    assert plan["evaluate"] == plan["score"] == plan["monitor"] == plan["index"] == 2  # alone
    assert plan["features"] == 1 and plan["validate"] == 1  # they can run side by side
    on_eight = thread_plan(GRAPH, every, cores=8, processes=4)
    assert on_eight["train-rf"] == 2 and on_eight["evaluate"] == 8
    # a rebuild where only one candidate is stale: it runs alone, with every core
    assert thread_plan(GRAPH, {"train-rf", "evaluate"}, cores=2, processes=4) == {
        "train-rf": 2, "evaluate": 2}  # fmt: skip
    assert thread_plan(GRAPH, every, cores=8, processes=2)["train-rf"] == 4  # two at a time
    assert set(thread_plan(GRAPH, every, cores=2, processes=4, fixed=1).values()) == {1}


class _Task:
    """A task whose build reports the thread limits it ran under."""

    def _build(self, **kwargs):
        from threadpoolctl import threadpool_info

        pools = {p["user_api"]: p["num_threads"] for p in threadpool_info()}
        return kwargs, os.environ.get("OMP_NUM_THREADS"), pools


def test_a_budgeted_build_runs_with_its_threads_and_restores_the_worker(monkeypatch):
    import numpy  # noqa: F401 - loads a BLAS pool to limit
    import sklearn.ensemble  # noqa: F401 - loads OpenMP

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    kwargs, variable, pools = Budgeted(_Task(), 1)(catch_exceptions=True)
    assert kwargs == {"catch_exceptions": True} and variable == "1"
    assert pools and set(pools.values()) == {1}
    # two threads: OpenMP takes them, BLAS stays at one (executor.BLAS_THREADS)
    _, variable, pools = Budgeted(_Task(), 2)()
    assert variable == "2" and pools.get("openmp") == 2 and pools.get("blas", 1) == 1
    assert "OMP_NUM_THREADS" not in os.environ
