"""The experiment's routing and rollback, without a server (the server's tests run it live)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from nbmlops import abtest
from nbmlops.metrics import sequential
from nbmlops.records import LABELS_FILE
from nbmlops.serving.canary import LATENCY_MIN, STATE_FILE, Canary, draw
from nbmlops.settings import ExperimentSettings


def _canary(tmp_path, **kw) -> Canary:
    canary = Canary(ExperimentSettings.from_params({"share": 0.1} | kw, "env.yaml"), tmp_path)
    canary.follow("1", "2")
    return canary


def test_a_key_keeps_its_arm_and_the_shares_come_out_as_declared(tmp_path):
    canary = _canary(tmp_path, key="customer")
    records = [{"customer": f"c{i}"} for i in range(20_000)]
    first = canary.arms(records)
    assert canary.arms(records) == first  # the same customers, the same arms
    assert abs(np.mean(first) - 0.1) < 0.01
    assert canary.arms([{"customer": "c7"}] * 5) == [first[7]] * 5
    canary.follow("1", "3")  # a new version draws afresh
    again = canary.arms(records)
    assert abs(np.mean(again) - 0.1) < 0.01 and again != first
    unkeyed = _canary(tmp_path)
    assert abs(np.mean(unkeyed.arms([{}] * 20_000)) - 0.1) < 0.01
    assert 0 <= draw("x", "challenger", "2") < 1


def test_no_canary_beside_no_champion_or_as_the_champion_itself(tmp_path):
    canary = _canary(tmp_path)
    canary.follow(None, "2")
    assert canary.share == 0 and not any(canary.arms([{}] * 100))
    canary.follow("2", "2")
    assert canary.share == 0
    canary.follow("2", "3")
    assert canary.share == 0.1


def test_a_slow_canary_is_rolled_back_and_stays_so_after_a_restart(tmp_path):
    canary = _canary(tmp_path, max_p99_ms=20)
    for _ in range(LATENCY_MIN - 1):
        canary.answered(50.0)
    canary.check_latency(35.0)
    assert canary.share == 0.1  # too few answers to judge
    canary.answered(float("inf"))
    canary.check_latency(35.0)
    assert canary.share == 0 and "over its limit of 20 ms" in canary.rolled_back
    state = json.loads((tmp_path / STATE_FILE).read_text())
    assert (state["canary"], state["champion"]) == ("2", "1")
    restarted = _canary(tmp_path)
    assert restarted.share == 0 and restarted.rolled_back == canary.rolled_back
    restarted.follow("1", "4")  # another version is another experiment
    assert restarted.share == 0.1 and restarted.rolled_back is None


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
                            "served_proba": proba, "served_threshold": 0.5})  # fmt: skip
    labels = pd.DataFrame({"request_id": archive["request_id"], "record": 0, "outcome": y})
    return archive, labels


def test_the_test_reads_each_arm_over_the_time_both_ran(tmp_path):
    archive, labels = _archive(2000, 0.9)
    before = archive.head(500).assign(served_arm="champion", served_version="1",
                                      received_at=lambda f: f["received_at"] - pd.Timedelta("1h"))  # fmt: skip
    before["request_id"] = "old" + before["request_id"]
    wider = pd.concat([before, archive], ignore_index=True)
    more = pd.concat([labels, before[["request_id", "record"]].assign(outcome=1)])
    settings = ExperimentSettings.from_params({"share": 0.3}, "env.yaml")
    (found,) = abtest.experiments(wider, more, settings)
    assert (found.champion, found.canary) == ("1", "2")
    served = archive[archive["served_arm"] == "canary"]["received_at"]
    during = archive["received_at"].between(served.min(), served.max())
    champion = archive[during & (archive["served_arm"] == "champion")]
    assert found.result.champion.n == len(champion) < 2000 - len(served)  # not before or after
    assert found.decision == sequential.WORSE


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
