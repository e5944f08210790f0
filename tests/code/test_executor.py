"""The build lock: a second holder stops with a message naming the first, or waits for it;
each task's share of the cores."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

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


def test_a_promotion_takes_the_lock_a_build_of_the_same_env_takes(tmp_path):
    """The build's lock file is pipeline.yaml's `{{products}}/build.lock`; promotions,
    proposals and champion changes take the same file, waiting the env's build_lock_wait."""
    from nbmlops.locking import ProjectLocked, project_lock

    lock = project_lock({"products": str(tmp_path), "build_lock_wait": "5"}, "proposal")
    assert (lock.path, lock.wait_seconds, lock.what) == (tmp_path / "build.lock", 5.0, "proposal")
    assert "{{products}}/build.lock" in (Path(__file__).parents[2] / "pipeline.yaml").read_text()
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

    task, message, kind = clear_message(GATE_FAILURE)
    assert (task, kind) == ("evaluate", "GateError")
    assert message.splitlines()[0] == "the challenger fails the promotion gates:"
    assert message.splitlines()[-1].endswith("FAIL") and len(message.splitlines()) == 4
    unexpected = GATE_FAILURE.replace("nbmlops.registry.gates.GateError", "KeyError")
    assert clear_message(unexpected) is None  # anything else: the traceback is shown


#: What a build's process prints: its marked lines among progress bars, a kernel's message,
#: warnings of two kinds, Ploomber's table; `make build` shows the first and counts the others.
LOUD = r"""
import sys
print("Loading pipeline...")
print("» [1/2] ingest: ran in 1.2 s (no product yet)", flush=True)
sys.stdout.write("Executing:  50%|#####     | 1/2\rExecuting: 100%|##########| 2/2\n")
print("[IPKernelApp] WARNING | Kernel is running over TCP without encryption.")
print("/x/scipy/stats.py:12: RuntimeWarning: divide by zero encountered in divide")
print("/x/scipy/stats.py:12: RuntimeWarning: divide by zero encountered in divide")
print("/x/mlflow/models.py:3: UserWarning: pickle")
print("warning: batch 2024-05: prediction drift")
sys.stdout.write("\\rExecuting:  45%|####      | 9/20")  # another worker's bar, mid-line
print("» [2/2] evaluate: ran in 3.4 s (after ingest)")
print("name      Ran?      Elapsed (s)")
"""


def test_a_build_prints_its_lines_counts_the_warnings_and_logs_everything(tmp_path, capsys):
    from nbmlops.build import run

    loud = tmp_path / "ploomber"
    loud.write_text(f"#!{sys.executable}\n{LOUD}")
    loud.chmod(0o755)
    env = tmp_path / "env.demo.yaml"
    env.write_text("{}\n")
    assert run.run(str(env), [], str(loud)) == 0
    shown = capsys.readouterr().out.splitlines()
    log = tmp_path / "logs" / "build-demo.log"
    assert shown[:2] == ["[1/2] ingest: ran in 1.2 s (no product yet)",
                         "[2/2] evaluate: ran in 3.4 s (after ingest)"]  # fmt: skip
    assert shown[2] == f"warnings: 4 (2 RuntimeWarning, 1 UserWarning, 1 warning), in {log}"
    assert re.match(rf"build \S+ passed in \d+ s; full log: {re.escape(str(log))}$", shown[3])
    assert len(shown) == 4
    assert "Executing: 100%" in log.read_text() and "Ran?" in log.read_text()


def test_each_env_file_has_its_own_build_log():
    from nbmlops.build.run import log_path

    names = [log_path(e).name for e in ("env.yaml", "env.ci.yaml", "env.patients.yml", "my.yaml")]
    assert names == ["build-default.log", "build-ci.log", "build-patients.log", "build-my.log"]


def test_a_failure_without_a_traceback_shows_its_last_lines(tmp_path, capsys):
    from nbmlops.build import run

    usage = tmp_path / "ploomber"
    usage.write_text(f"#!{sys.executable}\nimport sys\nprint('Executing: 0%|')\n"
                     "print('usage: ploomber build [-h]')\n"
                     "print('ploomber build: error: unrecognized arguments: --env--x')\n"
                     "sys.exit(2)\n")  # fmt: skip
    usage.chmod(0o755)
    (tmp_path / "env.demo.yaml").write_text("{}\n")
    assert run.run(str(tmp_path / "env.demo.yaml"), [], str(usage)) == 2
    said = capsys.readouterr()
    assert "error: unrecognized arguments: --env--x" in said.out
    assert said.err.strip().startswith("build failed; full log:")


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


def test_a_shorter_task_yields_the_cores_to_longer_ones_that_run_at_once():
    from nbmlops.build.executor import LOWER_PRIORITY, priority_plan

    seconds = {"ingest": 2.6, "validate": 0.2, "features": 0.2, "train-logreg": 1.3,
               "train-hgb": 3.0, "train-rf": 15.3, "evaluate": 9.0, "score": 2.7,
               "monitor": 26.2, "index": 2.4}  # fmt: skip
    every = set(GRAPH)
    # two cores, three candidates at once (and validate, which may run beside them): the two
    # longest keep a core each
    assert priority_plan(GRAPH, every, 2, 4, seconds) == dict.fromkeys(
        ["train-logreg", "validate"], LOWER_PRIORITY)  # fmt: skip
    assert priority_plan(GRAPH, every, 1, 4, seconds) == dict.fromkeys(
        ["features", "train-hgb", "train-logreg", "validate"], LOWER_PRIORITY)  # fmt: skip
    assert priority_plan(GRAPH, every, 4, 4, seconds) == {}  # a core for each
    assert priority_plan(GRAPH, every, 2, 2, seconds) == {}  # two at a time on two cores
    # a first build, or a candidate never measured: every task at the normal priority
    assert priority_plan(GRAPH, every, 2, 4, {}) == {}
    unmeasured = {k: v for k, v in seconds.items() if k != "train-hgb"}
    assert priority_plan(GRAPH, every, 2, 4, unmeasured) == {}
    # only one candidate stale: it runs alone
    assert priority_plan(GRAPH, {"train-logreg", "evaluate"}, 1, 4, seconds) == {}


class _Spinner:
    """A task whose build spends CPU time."""

    name = "spinner"

    def _build(self, **kwargs):
        _spin(0.3)
        return "built"


def _spin(seconds):
    until = time.process_time() + seconds
    while time.process_time() < until:
        pass


def test_a_build_keeps_its_cpu_seconds_and_a_record_it_cannot_write_does_not_fail_it(
    tmp_path, capsys
):
    from nbmlops.build.executor import read_seconds

    record = tmp_path / ".cpu-seconds.json"
    assert Budgeted(_Spinner(), 1, record=record)() == "built"
    assert 0.25 < read_seconds(record)["spinner"] < 5
    (tmp_path / "file").write_text("not a folder")
    assert Budgeted(_Spinner(), 1, record=tmp_path / "file" / "record.json")() == "built"
    assert "spinner: its CPU seconds were not kept" in capsys.readouterr().out


def _priority(product, seconds, upstream=None):
    _spin(seconds)
    Path(str(product)).write_text(str(os.getpriority(os.PRIO_PROCESS, 0)))


@pytest.mark.skipif(os.getpriority(os.PRIO_PROCESS, 0) > 9, reason="already at a low priority")
def test_shorter_tasks_run_at_a_lower_priority_in_workers_of_their_own(tmp_path, capsys):
    from ploomber import DAG
    from ploomber.products import File
    from ploomber.tasks import PythonCallable

    from nbmlops.build.executor import LOWER_PRIORITY, LockedParallel, read_seconds

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


def test_the_pipelines_function_tasks_are_short_for_ploombers_differ():
    """Ploomber normalises a function task's source with autopep8 for each of its products to
    decide whether it changed; a long one cost 2.5 s of every no-op rebuild."""
    import inspect

    from ploomber.spec import DAGSpec
    from ploomber.tasks import PythonCallable

    root = Path(__file__).resolve().parents[2]
    dag = DAGSpec(str(root / "pipeline.yaml"), env=str(root / "env.ci.yaml")).to_dag()
    functions = [t.source.primitive for t in dag.values() if isinstance(t, PythonCallable)]
    assert functions, "the pipeline has a function task (the index)"
    for function in functions:
        assert len(inspect.getsource(function)) < 600, function.__qualname__


@pytest.mark.parametrize(
    ("argv", "forced"),
    [(["/venv/bin/ploomber", "build", "--force"], True),
     (["/venv/bin/ploomber", "build", "--env--seed", "1", "-f"], True),
     (["/venv/bin/ploomber", "build", "--env--seed", "1"], False),
     (["/venv/bin/ploomber", "task", "score", "--force"], False),
     (["/venv/bin/python", "-m", "pytest", "-f"], False)],
)  # fmt: skip
def test_a_forced_build_is_read_off_ploombers_command_line(monkeypatch, argv, forced):
    from nbmlops import ploombercompat

    monkeypatch.setattr("sys.argv", argv)
    assert ploombercompat.build_forced() is forced


def test_ploombers_private_parts_are_used_in_one_module_and_no_frame_is_walked():
    """Ploomber behind one wall: outside `ploombercompat`, the package imports only Ploomber's
    documented modules, and nothing reads the call stack."""
    import re

    public = {"ploomber", "ploomber.spec", "ploomber.constants", "ploomber.exceptions",
              "ploomber.executors", "ploomber.tasks", "ploomber.products"}  # fmt: skip
    package = Path(__file__).resolve().parents[2] / "src" / "nbmlops"
    for path in package.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"currentframe|_getframe|f_back|f_locals", text), path
        if path.name == "ploombercompat.py":
            continue
        used = set(re.findall(r"^\s*(?:from|import) (ploomber[\w.]*)", text, re.M))
        assert used <= public, f"{path.relative_to(package)} imports {used - public}"


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
