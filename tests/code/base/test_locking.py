"""The project lock: a second holder stops with a message naming the first, or waits for it;
promotions take the lock builds take."""

import subprocess
import sys
import time
from pathlib import Path

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


def test_a_promotion_takes_the_lock_a_build_of_the_same_env_takes(tmp_path):
    """The build's lock file is pipeline.yaml's `{{products}}/build.lock`; promotions,
    proposals and champion changes take the same file, waiting the env's build_lock_wait."""
    from nbmlops.locking import ProjectLocked, project_lock

    lock = project_lock({"products": str(tmp_path), "build_lock_wait": "5"}, "proposal")
    assert (lock.path, lock.wait_seconds, lock.what) == (tmp_path / "build.lock", 5.0, "proposal")
    assert "{{products}}/build.lock" in (Path(__file__).parents[3] / "pipeline.yaml").read_text()
    holder = _holder(lock.path, 30)
    try:
        with pytest.raises(ProjectLocked, match="another build .* this proposal stopped"):
            project_lock({"products": str(tmp_path)}, "proposal").acquire()
    finally:
        holder.kill()
        holder.wait()


def test_waiting_lock_takes_over_when_the_holder_ends(tmp_path, capsys):
    path = tmp_path / "build.lock"
    holder = _holder(path, 1.5)
    start = time.monotonic()
    with BuildLock(path, wait_seconds=60, poll=0.1):
        waited = time.monotonic() - start
    holder.wait()
    assert 0.5 < waited < 60
    assert "waiting for another build" in capsys.readouterr().out
