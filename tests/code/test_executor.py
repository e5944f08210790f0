"""The build lock: a second holder stops with a message naming the first, or waits for it."""

import subprocess
import sys
import time

import pytest

from nbmlops.build.executor import BuildLock, BuildLocked

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
