"""Live performance from an archive folder and its labels file, written by hand: windows,
the fallback apart from the champion, shadows, the paired difference, torn lines."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from nbmlops.monitoring.live import live_page, read_live
from nbmlops.records import LABELS_FILE, SEGMENTS, read_labels


def test_live_figures_per_window_and_model(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    y = rng.integers(0, 2, n)
    day = np.where(np.arange(n) < 250, 1, 2)
    archive = pd.DataFrame({
        "request_id": [f"r{i // 2}" for i in range(n)], "record": np.arange(n) % 2,
        "received_at": pd.to_datetime([f"2026-11-0{d}T12:00:00" for d in day]).astype("int64") / 1e9,
        "served_role": np.where(np.arange(n) % 10 == 0, "fallback", "champion"),
        "served_version": np.where(np.arange(n) % 10 == 0, "1", "2"),
        "served_proba": np.clip(y * 0.3 + rng.random(n) * 0.7, 0, 1),
        "challenger_version": "3", "challenger_proba": np.clip(y * 0.5 + rng.random(n) * 0.5, 0, 1),
    })  # fmt: skip
    # as the service keeps them: a time in UTC in a Parquet file, seconds in a segment
    when = pd.to_datetime(archive["received_at"], unit="s", utc=True)
    archive.iloc[:300].assign(received_at=when).to_parquet(tmp_path / "requests-a.parquet")
    (tmp_path / SEGMENTS).mkdir()
    rows = archive.iloc[280:].to_dict(orient="records")  # overlaps the file: read once
    (tmp_path / SEGMENTS / "segment-b.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows) + '{"request_id": "torn'
    )
    labelled = archive.iloc[::2]  # every other record has its outcome
    lines = [
        json.dumps({"request_id": r, "record": int(i), "outcome": int(o), "labelled_at": 0})
        for r, i, o in zip(labelled["request_id"], labelled["record"], y[::2], strict=True)
    ]
    lines += [
        json.dumps(
            {"request_id": "r0", "record": 0, "outcome": 1 - int(y[0]), "labelled_at": 1}
        ),  # a contradiction: the first one stands
        json.dumps({"request_id": "nobody", "record": 0, "outcome": 1, "labelled_at": 1}),
    ]
    (tmp_path / LABELS_FILE).write_text("\n".join(lines) + "\n")  # fmt: skip
    first, contradicting = read_labels(tmp_path)
    assert len(first) == 201 and contradicting == 1

    live = read_live(tmp_path, "D")
    assert live.counts == {"answered": 400, "labels": 201, "labelled": 200,
                           "labels_without_a_record": 1, "contradicting_labels": 1}  # fmt: skip
    models = live.models.set_index(["window", "model"])
    judged = archive.iloc[::2].assign(y=y[::2])
    champion = judged[judged["served_role"] == "champion"]
    assert models.loc[("all", "champion v2"), "rows"] == len(champion)
    assert models.loc[("all", "champion v2"), "roc_auc"] == pytest.approx(
        roc_auc_score(champion["y"], champion["served_proba"])
    )
    assert models.loc[("all", "fallback v1"), "rows"] == (judged["served_role"] == "fallback").sum()
    assert models.loc[("all", "challenger v3 (shadow)"), "rows"] == 200
    day1 = judged[judged.index < 250]
    assert models.loc[("2026-11-01", "challenger v3 (shadow)"), "roc_auc"] == pytest.approx(
        roc_auc_score(day1["y"], day1["challenger_proba"])
    )
    paired = live.paired.set_index("window").loc["all"]
    assert paired["rows"] == len(champion)  # the fallback's records are not the champion's
    assert paired["difference"] == pytest.approx(
        roc_auc_score(champion["y"], champion["challenger_proba"])
        - roc_auc_score(champion["y"], champion["served_proba"])
    )
    assert paired["low"] > 0  # the challenger was built to rank better
    assert "Shadow minus champion" in live_page(live)


def test_an_archive_without_labels_says_so(tmp_path):
    live = read_live(tmp_path)
    assert live.counts["answered"] == 0 and live.models.empty
    assert "No answered record has a label yet" in live_page(live)
