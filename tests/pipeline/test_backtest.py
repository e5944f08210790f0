"""`make backtest` on a user's own data: monthly visits with string labels, a current batch
file without labels, category values and a column name with markup in them."""

import json
import subprocess
import sys

import pytest

from nbmlops import storage
from tests.conftest import BYO_ENV

pytestmark = [pytest.mark.pipeline, pytest.mark.xdist_group("byo")]


def test_backtest_replays_a_users_periods_and_writes_its_page(byo_build, tmp_path):
    out = tmp_path / "backtest"
    done = subprocess.run(
        [sys.executable, "-m", "nbmlops.commands.backtest", "--env", BYO_ENV, "--out", str(out),
         "--policies", "never,monthly-expanding,monthly-no-shadow", "--label-delay", "1"],
        cwd=byo_build.project, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = storage.read_json(out / "backtest.json")
    # three labelled months after the reference window; the incoming file has no labels
    assert result["settings"]["periods"][3:] == ["2024-04", "2024-05", "2024-06"]
    assert result["skipped_batches"] == ["2024-07"]
    policies = result["policies"]
    names = ["never", "monthly-expanding", "monthly-no-shadow"]
    late = [f"{name}, labels 1 late" for name in names]
    assert [row["policy"] for row in result["summary"]] == names + late
    assert set(policies) == set(names + late)
    for name, replay in policies.items():
        assert [p["period"] for p in replay["periods"]] == ["2024-04", "2024-05", "2024-06"]
        assert all(0.5 < p["roc_auc"] <= 1 and p["status"] in ("pass", "warn", "fail")
                   for p in replay["periods"]), name  # fmt: skip
    expanding = policies["monthly-expanding"]
    assert [d["train"] for d in expanding["decisions"]] == [None, [0, 4], [0, 5]]
    assert [p["retrained"] for p in expanding["periods"]] == [False, True, True]
    # a month's labels known a month later: nothing new to train on at the second cut-off
    assert [d["train"] for d in policies[late[1]]["decisions"]] == [None, None, [0, 4]]
    cost = {row["policy"]: row for row in result["label_delay_cost"]}
    assert set(cost) == set(names) and cost["never"]["retrains_change"] == 0
    assert cost["monthly-expanding"]["retrains_change"] == -1
    summary = {row["policy"]: row for row in result["summary"]}
    assert summary["never"]["retrains"] == 0 and summary["monthly-expanding"]["retrains"] == 2
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "Backtest of retraining policies" in page and "<img" in page
    assert "<script" not in page.lower()
    assert "2024-07" in page  # named as left out
    assert "monthly-no-shadow: retrained every 1 period on every earlier period" in page
    assert "What labels 1 period late cost" in page
    assert json.loads((out / "backtest.json").read_text())["seconds"]["fits"] >= 3
