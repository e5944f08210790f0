"""The experiment's routing and rollback, without a server (the server's tests run it live)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from nbmlops import abtest
from nbmlops.abtest import LABELS, LATENCY, STATE_FILE
from nbmlops.metrics import sequential
from nbmlops.records import LABELS_FILE
from nbmlops.serving.canary import LATENCY_MIN, Canary, draw
from nbmlops.settings import ExperimentSettings


def _canary(tmp_path, **kw) -> Canary:
    canary = Canary(ExperimentSettings.from_params({"share": 0.1} | kw, "env.yaml"), tmp_path)
    canary.follow("1", "2")
    return canary


def test_a_key_keeps_its_arm_and_the_shares_come_out_as_declared(tmp_path):
    canary = _canary(tmp_path, key="customer")
    records = [{"customer": f"c{i}"} for i in range(20_000)]
    first, pair = canary.assign(records)
    assert pair == ("1", "2") and canary.assign(records)[0] == first  # the same key, the same arm
    assert abs(np.mean(first) - 0.1) < 0.01
    assert canary.assign([{"customer": "c7"}] * 5)[0] == [first[7]] * 5
    keys = [r["customer"] for r in records]  # a key the models do not take comes apart
    assert canary.assign([{}] * len(keys), keys)[0] == first
    canary.follow("1", "3")  # a new version draws afresh
    again = canary.assign(records)[0]
    assert abs(np.mean(again) - 0.1) < 0.01 and again != first
    unkeyed = _canary(tmp_path)
    assert abs(np.mean(unkeyed.assign([{}] * 20_000)[0]) - 0.1) < 0.01
    assert 0 <= draw("x", "challenger", "2") < 1


def test_no_canary_beside_no_champion_or_as_the_champion_itself(tmp_path):
    canary = _canary(tmp_path)
    canary.follow(None, "2")
    assert canary.share == 0 and canary.assign([{}] * 100) == ([False] * 100, None)
    canary.follow("2", "2")
    assert canary.share == 0
    canary.follow("2", "3")
    assert canary.share == 0.1


def test_a_slow_canary_is_rolled_back_and_stays_so_after_a_restart(tmp_path):
    canary = _canary(tmp_path, max_p99_ms=20)
    for _ in range(LATENCY_MIN - 1):
        canary.waited("canary", 50.0, "2")
    canary.check_latency(35.0)
    assert canary.share == 0.1  # too few answers to judge
    canary.waited("canary", float("inf"), "2")
    canary.check_latency(35.0)
    assert canary.share == 0 and "over its limit of 20 ms" in canary.rolled_back
    (state,) = json.loads((tmp_path / STATE_FILE).read_text())["rollbacks"]
    assert (state["canary"], state["champion"], state["kind"]) == ("2", "1", LATENCY)
    restarted = _canary(tmp_path)
    assert restarted.share == 0 and restarted.rolled_back == canary.rolled_back
    restarted.follow("5", "2")  # too slow beside any champion
    assert restarted.share == 0
    restarted.follow("1", "4")  # another version is another experiment
    assert restarted.share == 0.1 and restarted.rolled_back is None


def test_a_pause_that_slows_both_arms_rolls_nothing_back_and_a_slow_canary_still_is(tmp_path):
    canary = _canary(tmp_path)
    for i in range(3000):  # a pause of the whole process: 2 % of every arm's answers wait
        slow = 300.0 if i % 50 == 0 else 5.0
        canary.waited("champion", slow, "1")
        if i % 3 == 0:
            canary.waited("canary", slow, "2")
    canary.waited("champion", 5.0, "7")  # another version's times are left out
    canary.check_latency(35.0)
    assert canary.share == 0.1 and canary.rolled_back is None
    for _ in range(1000):  # then the canary alone is slow, the champion keeps its pace
        canary.waited("canary", 60.0, "2")
        canary.waited("champion", 5.0, "1")
    canary.check_latency(35.0)
    assert canary.share == 0 and "over its limit of 35 ms" in canary.rolled_back
    assert "(100.0% of its answers over it, the champion's 0.0% over the same time)" in (
        canary.rolled_back
    )


def test_a_canary_that_never_answers_is_rolled_back_even_beside_a_champion_that_misses(
    tmp_path,
):
    canary = _canary(tmp_path)
    for i in range(2000):  # 2 % of the champion's answers missed: its p99 is a miss too
        canary.waited("champion", float("inf") if i % 50 == 0 else 5.0, "1")
        if i % 10 == 0:
            canary.waited("canary", float("inf"), "2")
    canary.check_latency(35.0)
    assert canary.share == 0 and "no answer or an error" in canary.rolled_back


def test_a_canary_that_never_answers_is_rolled_back(tmp_path):
    canary = _canary(tmp_path)
    for _ in range(LATENCY_MIN * 3):  # every answer missed: the p99 is not NaN
        canary.waited("canary", float("inf"), "2")
    canary.check_latency(35.0)
    assert canary.share == 0 and "no answer or an error" in canary.rolled_back


def test_a_check_made_for_one_canary_never_rolls_back_the_next(tmp_path):
    canary = _canary(tmp_path)
    canary.follow("1", "3")  # the registry moved on while a check of v2 ran
    canary.roll_back("v2 was worse", "2", "1", LABELS)
    assert canary.share == 0.1 and canary.rolled_back is None
    assert not (tmp_path / STATE_FILE).exists()


def test_an_unreadable_state_file_keeps_the_canary_off_and_says_why(tmp_path):
    (tmp_path / STATE_FILE).write_text("{torn")
    canary = _canary(tmp_path)
    assert canary.share == 0 and "experiment.json cannot be read" in canary.rolled_back


def _archive(n: int, canary_loss: float, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    arm = np.where(rng.random(n) < 0.3, "canary", "champion")
    good = np.where(y == 1, 0.8, 0.2)
    proba = np.where(arm == "canary", np.abs(y - canary_loss), good)
    archive = pd.DataFrame({"request_id": [f"r{i}" for i in range(n)], "record": 0,
                            "received_at": pd.to_datetime(1000 + np.arange(n), unit="s", utc=True),
                            "served_arm": arm,
                            "served_version": np.where(arm == "canary", "2", "1"),
                            "served_proba": proba, "served_threshold": 0.5,
                            "experiment_champion": "1", "experiment_canary": "2"})  # fmt: skip
    labels = pd.DataFrame({"request_id": archive["request_id"], "record": 0, "outcome": y})
    return archive, labels


def test_each_experiment_is_its_pair_and_each_arm_what_its_users_got():
    archive, labels = _archive(2000, 0.9)
    settings = ExperimentSettings.from_params({"share": 0.3}, "env.yaml")
    # records answered with no experiment running (before it, after a rollback) are in none
    outside = archive.head(300).assign(experiment_champion=None, experiment_canary=None)
    outside["request_id"] = "out" + outside["request_id"]
    # the canary beside another champion is another experiment
    other = archive.head(300).assign(experiment_champion="4", served_arm="champion")
    other["request_id"] = "other" + other["request_id"]
    # a record the canary missed: the champion answered it, in the canary's arm
    missed = archive.head(50).assign(served_arm="canary", served_version="1", served_proba=0.99)
    missed["request_id"] = "missed" + missed["request_id"]
    wider = pd.concat([archive, outside, other, missed], ignore_index=True)
    more = pd.concat([labels] + [f[["request_id", "record"]].assign(outcome=0)
                                 for f in (outside, other, missed)])  # fmt: skip
    found = {(e.champion, e.canary): e for e in abtest.experiments(wider, more, settings)}
    assert set(found) == {("1", "2"), ("4", "2")}
    test = found[("1", "2")]
    canary = (archive["served_arm"] == "canary").sum()
    assert test.result.canary.n == canary + 50 and test.result.champion.n == 2000 - canary
    assert test.decision == sequential.WORSE and test.unit == "record"


def test_with_a_key_each_key_value_counts_once():
    archive, labels = _archive(2000, 0.1)
    archive["customer"] = [f"c{i % 100}" for i in range(2000)]
    settings = ExperimentSettings.from_params({"share": 0.3, "key": "customer"}, "env.yaml")
    (found,) = abtest.experiments(archive, labels, settings)
    per_arm = archive.groupby("served_arm")["customer"].nunique()
    assert found.unit == "customer"
    assert (found.result.canary.n, found.result.champion.n) == (per_arm["canary"],
                                                                per_arm["champion"])  # fmt: skip


def test_the_service_s_check_rolls_a_worse_canary_back_from_the_files(tmp_path):
    archive, labels = _archive(1000, 0.9)
    archive.to_parquet(tmp_path / "requests-0001.parquet")
    (tmp_path / LABELS_FILE).write_text("".join(json.dumps(r) + "\n" for r in
                                                labels.to_dict(orient="records")))  # fmt: skip
    canary = _canary(tmp_path, min_labels=50)
    found = canary.check_labels()
    assert found.decision == sequential.WORSE and canary.share == 0
    assert "it is worse on" in canary.rolled_back
    assert canary.describe()["test"]["labels_canary"] == found.result.canary.n
    better = Canary(ExperimentSettings.from_params({"share": 0.1}, "env.yaml"), tmp_path)
    better.follow("1", "5")  # no record of v5 yet: nothing to decide
    assert better.check_labels() is None and better.share == 0.1
    better.follow("1", "2")  # rolled back beside v1: off, and its test is not read again
    assert better.share == 0 and better.check_labels() is None


def _write_labels(folder, labels: pd.DataFrame) -> None:
    with (folder / LABELS_FILE).open("a") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in labels.to_dict(orient="records")))


def test_the_service_s_running_test_reaches_what_the_whole_files_give(tmp_path):
    """Labels arrive in parts (one line half written), records of another experiment and of
    none are mixed in, some labels come before their records: at each check the running sums
    give the test `experiments` gives on the whole files."""
    archive, labels = _archive(3000, 0.25, seed=3)
    archive["customer"] = [f"c{i % 400}" for i in range(3000)]
    other = archive.head(500).assign(experiment_champion="4")
    other["request_id"] = "o" + other["request_id"]
    every = pd.concat([archive, other], ignore_index=True)
    every_labels = pd.concat([labels, other[["request_id", "record"]].assign(outcome=1)])
    every_labels = every_labels.sample(frac=1, random_state=0)  # labels come in any order
    assert list(every_labels["request_id"]).index("r1") < len(every_labels) // 2  # r1 before
    for key in (None, "customer"):
        folder = tmp_path / str(key)
        folder.mkdir()
        settings = ExperimentSettings.from_params({"share": 0.3, "key": key, "min_labels": 30},
                                                  "env.yaml")  # fmt: skip
        running = abtest.Running(folder, settings, "1", "2")
        every.iloc[:2000].to_parquet(folder / "requests-0001.parquet")
        parts = np.array_split(np.arange(len(every_labels)), 4)
        for i, part in enumerate(parts):
            if i == 2:  # the rest of the records reach the archive; the line on its way
                every.iloc[2000:].to_parquet(folder / "requests-0002.parquet")
                with (folder / LABELS_FILE).open("a") as fh:  # ends: r1 once more
                    fh.write('ord": 0, "outcome": 1}\n')
            _write_labels(folder, every_labels.iloc[part])
            if i == 1:  # a line on its way: not read until it is whole
                with (folder / LABELS_FILE).open("a") as fh:
                    fh.write('{"request_id": "r1", "rec')
            found = running.update()
            archived = every.iloc[: 2000 if i < 2 else None]
            shown = every_labels.iloc[np.concatenate(parts[: i + 1])]
            (whole,) = [e for e in abtest.experiments(archived, shown, settings)
                        if (e.champion, e.canary) == ("1", "2")]  # fmt: skip
            a, b = found.result, whole.result
            assert (a.champion.n, a.canary.n) == (b.champion.n, b.canary.n), (key, i)
            assert np.isclose(a.difference, b.difference) and a.decision == b.decision
        assert found.unit == (key or "record") and not running.pending
        assert len(running.counted) == len(labels)  # every label of this experiment, once


def test_labels_that_come_before_their_records_wait_for_them(tmp_path):
    archive, labels = _archive(600, 0.25, seed=5)
    settings = ExperimentSettings.from_params({"share": 0.3, "min_labels": 30}, "env.yaml")
    running = abtest.Running(tmp_path, settings, "1", "2")
    _write_labels(tmp_path, labels)  # no record archived yet
    waiting = running.update()
    assert (waiting.result.champion.n, waiting.result.canary.n) == (0, 0)
    assert len(running.pending) == 600
    archive.to_parquet(tmp_path / "requests-0001.parquet")
    found = running.update()
    (whole,) = abtest.experiments(archive, labels, settings)
    assert (found.result.champion.n, found.result.canary.n) == (whole.result.champion.n,
                                                                whole.result.canary.n)  # fmt: skip
    assert not running.pending and found.decision == whole.decision
