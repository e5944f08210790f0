"""The parallel build behind the project lock: tasks in worker processes, shorter ones at a lower
priority, a failure stopping what follows, a dead worker stopping the build."""

import os
import time
from pathlib import Path

import pytest

from tests.helpers import spin


def _priority(product, seconds, upstream=None):
    spin(seconds)
    Path(str(product)).write_text(str(os.getpriority(os.PRIO_PROCESS, 0)))


@pytest.mark.skipif(os.getpriority(os.PRIO_PROCESS, 0) > 9, reason="already at a low priority")
def test_shorter_tasks_run_at_a_lower_priority_in_workers_of_their_own(tmp_path, capsys):
    from ploomber import DAG
    from ploomber.products import File
    from ploomber.tasks import PythonCallable

    from nbmlops.build.cores import LOWER_PRIORITY, read_seconds
    from nbmlops.build.executor import LockedParallel

    executor = LockedParallel(str(tmp_path / "build.lock"), processes=2)
    executor.record, executor.cores = tmp_path / ".cpu-seconds.json", 1
    dag = DAG(executor=executor)
    tasks = {name: PythonCallable(_priority, File(tmp_path / f"{name}.txt"), dag, name=name,
                                  params={"seconds": seconds})
             for name, seconds in [("long", 0.6), ("mid", 0.3), ("short", 0.1)]}  # fmt: skip
    after = PythonCallable(_priority, File(tmp_path / "after.txt"), dag, name="after",
                           params={"seconds": 0.0})  # fmt: skip
    for task in tasks.values():
        task >> after
    own = os.getpriority(os.PRIO_PROCESS, 0)

    def priorities():
        return {n: int((tmp_path / f"{n}.txt").read_text()) for n in [*tasks, "after"]}

    dag.build(show_progress=False)  # a first build: nothing measured, all at one priority
    assert set(priorities().values()) == {own}
    seconds = read_seconds(executor.record)
    assert seconds["long"] > seconds["mid"] > seconds["short"]
    dag.build(force=True, show_progress=False)
    lower = own + LOWER_PRIORITY
    assert priorities() == {"long": own, "mid": lower, "short": lower, "after": own}
    assert "lower CPU priority (shorter, at its last run, than 1 tasks" in capsys.readouterr().out


def _sleep(product, seconds=1.5):
    time.sleep(seconds)
    Path(str(product)).write_text("done")


def _fail(product, upstream=None):
    raise ValueError("a task that fails on purpose")


def _after(product, upstream):
    Path(str(product)).write_text("ran")


def _dag(tmp_path, failing=False):
    from ploomber import DAG
    from ploomber.products import File
    from ploomber.tasks import PythonCallable

    from nbmlops.build.executor import LockedParallel

    executor = LockedParallel(str(tmp_path / "build.lock"), processes=2)
    dag = DAG(executor=executor)
    slow = PythonCallable(_sleep, File(tmp_path / "slow.txt"), dag, name="slow")
    first = PythonCallable(_fail if failing else _sleep, File(tmp_path / "first.txt"), dag,
                           name="first", params={} if failing else {"seconds": 0.1})  # fmt: skip
    after = PythonCallable(_after, File(tmp_path / "after.txt"), dag, name="after")
    first >> after
    return dag, slow


def test_the_build_process_waits_for_its_tasks_without_using_a_core(tmp_path):
    import resource

    dag, _ = _dag(tmp_path)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic()
    report = dag.build(show_progress=False)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert sorted(report["name"]) == ["after", "first", "slow"] and all(report["Ran?"])
    assert not any(dag.build(show_progress=False)["Ran?"])  # what ran is known to have run
    assert (tmp_path / "after.txt").read_text() == "ran" and wall > 1.5
    # Ploomber's own loop asks for the next task without pause: about one CPU second a second
    assert cpu < 0.5 * wall, f"{cpu:.2f} s of CPU in {wall:.2f} s"


def test_a_failed_task_stops_what_follows_it_and_not_its_siblings(tmp_path):
    from ploomber.constants import TaskStatus
    from ploomber.exceptions import DAGBuildError

    dag, slow = _dag(tmp_path, failing=True)
    with pytest.raises(DAGBuildError, match="a task that fails on purpose"):
        dag.build(show_progress=False)
    assert dag["first"].exec_status == TaskStatus.Errored
    assert dag["after"].exec_status == TaskStatus.Aborted and not (tmp_path / "after.txt").exists()
    assert slow.exec_status == TaskStatus.Executed and (tmp_path / "slow.txt").read_text() == "done"


def _die(product, upstream=None):
    time.sleep(0.2)
    os._exit(3)


def test_a_worker_that_dies_stops_the_build_and_what_ran_elsewhere_is_kept(tmp_path):
    from concurrent.futures.process import BrokenProcessPool

    from ploomber import DAG
    from ploomber.constants import TaskStatus
    from ploomber.products import File
    from ploomber.tasks import PythonCallable

    from nbmlops.build.executor import LockedParallel
    from nbmlops.storage import write_json

    executor = LockedParallel(str(tmp_path / "build.lock"), processes=2)
    executor.record, executor.cores = tmp_path / ".cpu-seconds.json", 1
    write_json(executor.record, {"dies": 5.0, "short": 1.0})  # short: a worker of its own
    dag = DAG(executor=executor)
    PythonCallable(_die, File(tmp_path / "dies.txt"), dag, name="dies")
    short = PythonCallable(_priority, File(tmp_path / "short.txt"), dag, name="short",
                           params={"seconds": 0.6})  # fmt: skip
    with pytest.raises(BrokenProcessPool, match="the worker pool running dies broke"):
        dag.build(show_progress=False)
    # the task in the other pool ran to its end while the build stopped, and is known to have
    assert short.exec_status == TaskStatus.Executed and (tmp_path / "short.txt").is_file()
