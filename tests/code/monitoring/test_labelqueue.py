"""Label sampling: a declared share of each model's answers, stratified by score decile, drawn
the same way each time, kept once queued."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nbmlops.commands import labels as cli
from nbmlops.errors import DataError
from nbmlops.monitoring import labelqueue
from nbmlops.records import LABELS_FILE


def _archive(folder, start: int, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    arm = np.where(rng.random(n) < 0.2, "canary", "champion")
    frame = pd.DataFrame({
        "request_id": [f"r{i}" for i in range(start, start + n)], "record": 0,
        "received_at": pd.to_datetime(start + np.arange(n), unit="s", utc=True),
        "distance": rng.integers(100, 3000, n).astype(float), "origin": "EWR",
        "app_version": "2.1",  # a field whose name ends like a shadow's column is the request's
        "served_version": np.where(arm == "canary", "2", "1"), "served_arm": arm,
        "served_role": np.where(arm == "canary", "canary", "champion"),
        "served_proba": rng.random(n), "served_threshold": 0.5, "fallback_reason": None,
        "challenger_version": "2", "challenger_proba": rng.random(n), "challenger_ms": 1.0,
    })  # fmt: skip
    frame.to_parquet(folder / f"requests-{start:06d}.parquet")
    return frame


def test_every_record_is_drawn_at_the_declared_share_in_every_model_and_decile(tmp_path):
    archive = _archive(tmp_path, 0, 20_000, seed=1)
    found = labelqueue.draw(tmp_path, 0.1)
    strata = found.strata.set_index(["served_version", "served_arm", labelqueue.DECILE])
    assert len(strata) == 20  # two models, ten deciles each
    rate = strata["queued"] / strata["answered"]  # each stratum near 0.1 (binomial)
    assert ((rate - 0.1).abs() <= 4 * np.sqrt(0.09 / strata["answered"])).all(), rate
    assert found.added == found.queued == found.waiting == strata["queued"].sum()
    queued = labelqueue.read_queued(tmp_path)
    assert len(queued) == found.queued and not queued.duplicated().any()
    again = labelqueue.draw(tmp_path, 0.1)  # the same records: nothing new, the same draw
    assert again.added == 0 and again.queued == found.queued
    table = pd.read_csv(found.csv, dtype={"served_version": str})
    assert set(table.columns) == {"request_id", "record", "served_version", "served_arm",
                                  labelqueue.DECILE, "distance", "origin", "app_version",
                                  "outcome"}  # fmt: skip
    assert table["outcome"].isna().all() and len(table) == found.queued
    inputs = archive.set_index("request_id").loc[table["request_id"], "distance"]
    assert table["distance"].tolist() == inputs.tolist()


def test_a_small_model_is_drawn_at_the_same_rate_as_a_large_one(tmp_path):
    """240 answers of a canary at 2 %: rounding a share per decile (24 records each) would
    queue none of them; drawn record by record, about 5 are."""
    rng = np.random.default_rng(4)
    draws = []
    for seed in range(40):
        folder = tmp_path / str(seed)
        folder.mkdir()
        frame = _archive(folder, 0, 240, seed=seed).assign(served_arm="canary")
        frame.to_parquet(folder / "requests-000000.parquet")
        draws.append(labelqueue.draw(folder, 0.02, seed=int(rng.integers(1 << 30))).queued)
    assert 0.02 * 240 * 0.6 <= np.mean(draws) <= 0.02 * 240 * 1.4


def test_records_once_queued_stay_queued_and_labelled_ones_leave_the_csv(tmp_path):
    _archive(tmp_path, 0, 2000, seed=2)
    first = labelqueue.draw(tmp_path, 0.05)
    before = set(map(tuple, labelqueue.read_queued(tmp_path).itertuples(index=False)))
    _archive(tmp_path, 2000, 2000, seed=3)  # a month later: more answers
    table = pd.read_csv(first.csv)
    labels = [{"request_id": r, "record": 0, "outcome": 1} for r in table["request_id"][:20]]
    (tmp_path / LABELS_FILE).write_text("".join(json.dumps(r) + "\n" for r in labels))
    second = labelqueue.draw(tmp_path, 0.05)
    after = set(map(tuple, labelqueue.read_queued(tmp_path).itertuples(index=False)))
    assert before < after and second.added == len(after) - len(before) > 0
    assert second.waiting == len(after) - 20
    assert not set(pd.read_csv(second.csv)["request_id"]) & {r["request_id"] for r in labels}
    assert second.strata["queued"].sum() == len(after)


def test_a_new_draw_keeps_what_was_typed_in_and_shows_formulas_as_text(tmp_path):
    archive = _archive(tmp_path, 0, 2000, seed=5)
    archive.assign(origin="=HYPERLINK(1)").to_parquet(tmp_path / "requests-000000.parquet")
    first = labelqueue.draw(tmp_path, 0.2)
    table = pd.read_csv(first.csv, dtype=str, keep_default_na=False)
    assert set(table["origin"]) == {"'=HYPERLINK(1)"}
    table.loc[:9, "outcome"] = "1"  # a person types ten outcomes, then a new draw comes
    table.to_csv(first.csv, index=False, encoding="utf-8-sig")  # as a spreadsheet saves it
    (tmp_path / labelqueue.QUEUE_LOG).open("a").write('{"request_id": "torn')  # a crash
    _archive(tmp_path, 2000, 2000, seed=6)
    second = labelqueue.draw(tmp_path, 0.2)
    kept = pd.read_csv(second.csv, dtype=str, keep_default_na=False)
    typed = kept[kept["outcome"] != ""]
    assert sorted(typed["request_id"]) == sorted(table["request_id"][:10])
    assert second.queued > first.queued


def test_a_filled_in_queue_is_read_as_feedback_and_a_bad_outcome_stops_it(tmp_path):
    path = tmp_path / "queue.csv"
    path.write_text("request_id,record,distance,outcome\nr1,0,10,1\nr2,0,12,\nr3,1,9,0.0\n")
    assert cli.filled(path) == [{"request_id": "r1", "record": 0, "outcome": 1},
                                {"request_id": "r3", "record": 1, "outcome": 0}]  # fmt: skip
    path.write_text("request_id,record,outcome\nr1,0,1\nr2,0,late\nr3,0,2\n")
    with pytest.raises(DataError, match=r"2 row\(s\) hold something else \(row 3: 'late', "
                                        r"row 4: '2'\); nothing was sent"):  # fmt: skip
        cli.filled(path)
    path.write_text("\ufeffrequest_id,record,outcome\nr1,0,1\nr2,,0\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"column 'record': must be the record's place"):
        cli.filled(path)
