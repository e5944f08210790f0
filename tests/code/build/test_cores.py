"""Each task's share of the cores and its CPU priority, and the CPU seconds a build keeps."""

import os

from nbmlops.build.cores import Budgeted, thread_plan
from tests.helpers import spin

# The pipeline's shape: one chain with the candidate grid in the middle.
GRAPH = {"ingest": set(), "quality": {"ingest"}, "features": {"ingest"},
         "train-logreg": {"features"}, "train-hgb": {"features"}, "train-rf": {"features"},
         "evaluate": {"train-logreg", "train-hgb", "train-rf", "quality"},
         "score": {"evaluate"}, "monitor": {"score"}, "index": {"monitor"}}  # fmt: skip


class _Task:
    """A task whose build reports the thread limits it ran under."""

    def _build(self, **kwargs):
        from threadpoolctl import threadpool_info

        pools = {p["user_api"]: p["num_threads"] for p in threadpool_info()}
        return kwargs, os.environ.get("OMP_NUM_THREADS"), pools


class _Spinner:
    """A task whose build spends CPU time."""

    name = "spinner"

    def _build(self, **kwargs):
        spin(0.3)
        return "built"


def test_each_task_gets_the_cores_divided_by_the_tasks_that_run_with_it():
    every = set(GRAPH)
    plan = thread_plan(GRAPH, every, cores=2, processes=4)
    assert plan["train-hgb"] == plan["train-rf"] == plan["train-logreg"] == 1  # three at once
    assert plan["evaluate"] == plan["score"] == plan["monitor"] == plan["index"] == 2  # alone
    assert plan["features"] == 1 and plan["quality"] == 1  # they can run side by side
    on_eight = thread_plan(GRAPH, every, cores=8, processes=4)
    assert on_eight["train-rf"] == 2 and on_eight["evaluate"] == 8
    # a rebuild where only one candidate is stale: it runs alone, with every core
    assert thread_plan(GRAPH, {"train-rf", "evaluate"}, cores=2, processes=4) == {
        "train-rf": 2, "evaluate": 2}  # fmt: skip
    assert thread_plan(GRAPH, every, cores=8, processes=2)["train-rf"] == 4  # two at a time
    assert set(thread_plan(GRAPH, every, cores=2, processes=4, fixed=1).values()) == {1}


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
    from nbmlops.build.cores import LOWER_PRIORITY, priority_plan

    seconds = {"ingest": 2.6, "quality": 0.2, "features": 0.2, "train-logreg": 1.3,
               "train-hgb": 3.0, "train-rf": 15.3, "evaluate": 9.0, "score": 2.7,
               "monitor": 26.2, "index": 2.4}  # fmt: skip
    every = set(GRAPH)
    # two cores, three candidates at once (and quality, which may run beside them): the two
    # longest keep a core each
    assert priority_plan(GRAPH, every, 2, 4, seconds) == dict.fromkeys(
        ["train-logreg", "quality"], LOWER_PRIORITY)  # fmt: skip
    assert priority_plan(GRAPH, every, 1, 4, seconds) == dict.fromkeys(
        ["features", "train-hgb", "train-logreg", "quality"], LOWER_PRIORITY)  # fmt: skip
    assert priority_plan(GRAPH, every, 4, 4, seconds) == {}  # a core for each
    assert priority_plan(GRAPH, every, 2, 2, seconds) == {}  # two at a time on two cores
    # a first build, or a candidate never measured: every task at the normal priority
    assert priority_plan(GRAPH, every, 2, 4, {}) == {}
    unmeasured = {k: v for k, v in seconds.items() if k != "train-hgb"}
    assert priority_plan(GRAPH, every, 2, 4, unmeasured) == {}
    # only one candidate stale: it runs alone
    assert priority_plan(GRAPH, {"train-logreg", "evaluate"}, 1, 4, seconds) == {}


def test_a_build_keeps_its_cpu_seconds_and_a_record_it_cannot_write_does_not_fail_it(
    tmp_path, capsys
):
    from nbmlops.build.cores import read_seconds

    record = tmp_path / ".cpu-seconds.json"
    assert Budgeted(_Spinner(), 1, record=record)() == "built"
    assert 0.25 < read_seconds(record)["spinner"] < 5
    (tmp_path / "file").write_text("not a folder")
    assert Budgeted(_Spinner(), 1, record=tmp_path / "file" / "record.json")() == "built"
    assert "spinner: its CPU seconds were not kept" in capsys.readouterr().out
