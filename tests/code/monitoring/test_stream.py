"""Scoring in chunks gives every row the probability the whole batch gives it, and a batch file
is monitored from its chunks: every probability and label, a uniform sample of scored rows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from nbmlops.errors import DataError
from nbmlops.metrics import scores as m
from nbmlops.monitoring import monitor, stream
from nbmlops.monitoring.rules import MonitorRules
from nbmlops.spec import BATCH, FeatureSpec
from nbmlops.training import candidates as models
from tests import helpers

SPEC = FeatureSpec("defaulted", ["income", "debt_ratio"], ["segment"])
RULES = MonitorRules(max_regression={"roc_auc": 0.05})


def _loans(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"income": rng.lognormal(10, 0.6, n), "debt_ratio": rng.beta(2, 5, n),
                       "segment": rng.choice(["retail", "sme", "private"], n)})  # fmt: skip
    df["defaulted"] = (rng.random(n) < 0.1 + 0.5 * df["debt_ratio"]).astype(int)
    df.loc[::13, "income"] = np.nan
    return df


@pytest.fixture(scope="module")
def model():
    return models.fit(helpers.model("boosting", SPEC, max_iter=30), _loans(2000, 1), SPEC)[0]


def test_chunked_scoring_equals_scoring_at_once(model):
    rows = _loans(2501, 2)
    whole = model.predict_proba(rows[SPEC.columns])[:, 1]
    assert np.array_equal(m.predict_proba(model, rows, SPEC, chunk_rows=400), whole)
    assert np.array_equal(m.predict_proba(model, rows.iloc[:7], SPEC, chunk_rows=400), whole[:7])


def _gathered(model, path, max_rows, chunk_rows, seed=0):
    """A batch file taken as the monitor takes it: chunk by chunk, each scored by `model`."""
    rows = stream.parquet(path).metadata.num_rows
    gathered = stream.Gather(rows, SPEC, max_rows, seed)
    for _, frame in stream.pieces(path, SPEC.columns, "batch", chunk_rows, (SPEC.target,)):
        gathered.add(frame, m.predict_proba(model, frame, SPEC))
    return gathered.done()


def test_a_batch_file_is_taken_in_chunks_with_a_uniform_sample(model, tmp_path):
    rows = _loans(5000, 3)
    path = tmp_path / "batch.parquet"
    rows.to_parquet(path, row_group_size=1500)
    got = _gathered(model, path, max_rows=600, chunk_rows=700, seed=4)
    whole = model.predict_proba(rows[SPEC.columns])[:, 1]
    assert got.rows == 5000 and got.tally.rows == 5000 and got.tally.labelled
    exact = m.classification_metrics(rows["defaulted"], whole)
    counted = got.tally.metrics()
    for name in ("f1", "precision", "recall", "accuracy", "brier", "log_loss", "positive_rate"):
        assert counted[name] == pytest.approx(exact[name], rel=1e-12), name
    error = got.tally.roc_auc_error()
    assert error < 1e-5 and abs(counted["roc_auc"] - exact["roc_auc"]) <= error
    sample = got.sample
    assert len(sample) == 600 and not sample.duplicated().any()
    # each sampled row is a row of the file with its own probability and decision
    back = sample.merge(rows.assign(expected=whole), on=SPEC.columns + ["defaulted"])
    assert len(back) == 600 and np.array_equal(back[m.PROBA], back["expected"])
    assert (sample[m.PRED] == (sample[m.PROBA] >= 0.5)).all()
    # uniform over the file: drawn from every chunk, not the first rows
    positions = rows.reset_index().merge(sample, on=SPEC.columns)["index"]
    assert positions.min() < 500 and positions.max() > 4500
    counts = np.histogram(positions, bins=5, range=(0, 5000))[0]
    assert counts.min() > 90  # 120 expected per fifth
    everything = _gathered(model, path, max_rows=0, chunk_rows=700)
    assert len(everything.sample) == 5000
    # the same sample whatever the chunks: drawn before the first is read
    again = _gathered(model, path, max_rows=600, chunk_rows=4999, seed=4)
    pd.testing.assert_frame_equal(again.sample, sample)


def test_a_file_without_labels_or_without_a_feature(model, tmp_path):
    rows = _loans(300, 5)
    unlabelled = tmp_path / "unlabelled.parquet"
    rows.drop(columns="defaulted").to_parquet(unlabelled)
    got = _gathered(model, unlabelled, max_rows=100, chunk_rows=64)
    assert not got.tally.labelled and got.tally.rows == 300 and len(got.sample) == 100
    broken = tmp_path / "broken.parquet"
    rows.drop(columns="segment").to_parquet(broken)
    with pytest.raises(DataError, match=r"broken.parquet, column 'segment': missing; the models"):
        list(stream.pieces(broken, SPEC.columns))


def test_scores_are_taken_window_by_window_and_a_short_file_is_named(tmp_path):
    scores = pd.DataFrame({BATCH: ["reference"] * 5 + ["b1"] * 4 + ["b2"] * 3,
                           "served_proba": np.arange(12) / 12,
                           "served_threshold": [0.5] * 5 + [0.3] * 4 + [0.4] * 3})  # fmt: skip
    scores.to_parquet(tmp_path / "scores.parquet", row_group_size=5)
    reader = stream.Scores(tmp_path / "scores.parquet", chunk_rows=2)
    proba, at = reader.take("b1", 3)
    assert list(proba) == list(np.arange(5, 8) / 12) and list(at) == [0.3] * 3  # reference passed
    assert [list(x) for x in reader.take("b1", 1)] == [[8 / 12], [0.3]]
    with pytest.raises(DataError, match=r"scores.parquet, column '_batch': has 3 of the 4 rows "
                                        r"of batch 'b2'; score again"):  # fmt: skip
        reader.take("b2", 4)


def _same(a, b) -> bool:
    """Equal, numbers to 12 significant digits (NaN equal to NaN), inside dicts and lists."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12)
    return a == b


#: The served model's decision threshold in the scores file: not 0.5, as a calibrated model's.
SERVED_AT = 0.3


def _scores_file(path, windows: dict[str, pd.DataFrame], model) -> None:
    """A score task's file: the served model's scores of each window, in order."""
    frames = [pd.DataFrame({BATCH: name, "served_proba": model.predict_proba(rows[SPEC.columns])[:, 1],
                            "served_version": "1", "served_role": "champion",
                            "served_threshold": SERVED_AT, "challenger_proba": np.nan,
                            "challenger_threshold": np.nan, SPEC.target: rows[SPEC.target]})
              for name, rows in windows.items()]  # fmt: skip
    pd.concat(frames, ignore_index=True).to_parquet(path, row_group_size=250)


@pytest.fixture(scope="module")
def monitored(model, tmp_path_factory):
    """A build's files: training and held-out windows of four periods, and a batch file of two
    monthly batches (one with values training never saw, one unlabelled) and a control batch."""
    folder = tmp_path_factory.mktemp("monitored")
    train = pd.concat([_loans(300, s).assign(_period=f"2024-0{s}") for s in (1, 2, 3)],
                      ignore_index=True)  # fmt: skip
    holdout = _loans(400, 4).assign(_period="2024-04")
    may, june, same = _loans(1300, 5), _loans(700, 6), holdout.sample(300, random_state=1)
    may.loc[::7, "segment"] = "startup"  # never seen in training
    june["defaulted"] = np.nan
    batches = pd.concat([may.assign(_batch="2024-05", _control=""),
                         june.assign(_batch="2024-06", _control=""),
                         same.assign(_batch="control-same", _control="same")], ignore_index=True)  # fmt: skip
    batches.to_parquet(folder / "batches.parquet", row_group_size=500)
    windows = {"reference": holdout, "training": train, "2024-05": may, "2024-06": june,
               "control-same": same}  # fmt: skip
    _scores_file(folder / "scores.parquet", windows, model)
    return folder, train, holdout, windows


def _monitor(monitored, tmp_path, chunk_rows, max_rows, reference="holdout", last=0):
    folder, train, holdout, _ = monitored
    return monitor.monitor_batches(
        folder / "scores.parquet", train, holdout, folder / "batches.parquet",
        [{"batch": b, "served_by": "v1", "disagreement": np.nan}
         for b in ("2024-05", "2024-06", "control-same")],
        SPEC, tmp_path, "batches", RULES, reference=reference, rolling_periods=2,
        max_rows=max_rows, last=last, chunk_rows=chunk_rows,
    )  # fmt: skip


@pytest.mark.parametrize("reference", ["holdout", "rolling"])
def test_a_batch_file_is_monitored_in_chunks_as_it_is_whole(monitored, model, tmp_path, reference):
    """Chunks of 90 rows or the whole file at once give every batch the same figures: the
    sample is drawn before reading, the metrics use every row, unseen values are summed."""
    _, _, _, windows = monitored
    small = _monitor(monitored, tmp_path / "small", 90, 500, reference)
    whole = _monitor(monitored, tmp_path / "whole", 100_000, 500, reference)
    assert [r["batch"] for r in small.rows] == ["2024-05", "2024-06", "control-same"]

    for a, b in zip(small.rows, whole.rows, strict=True):  # sums in other orders: last digits
        assert _same(a, b), (a, b)
    may, june, same = small.rows
    assert may["rows"] == 1300 and may["rows_compared"] == 500 and june["rows_compared"] == 500
    assert same["rows_compared"] == 300 and same["reference"] == "the held-out window"
    truth = m.classification_metrics(windows["2024-05"]["defaulted"],
                                     model.predict_proba(windows["2024-05"][SPEC.columns])[:, 1],
                                     SERVED_AT)  # fmt: skip
    assert abs(may["roc_auc"] - truth["roc_auc"]) <= may["roc_auc_binning_error"] < 1e-5
    # decisions at the served model's own threshold, not at 0.5
    assert may["f1"] == pytest.approx(truth["f1"], rel=1e-12)
    assert may["predicted_positive_rate"] == pytest.approx(truth["predicted_positive_rate"])
    assert may["brier"] == pytest.approx(truth["brier"], rel=1e-12)
    assert may["unseen_categories"] == {"segment": {"rows": 186, "values": {"startup": 186}}}
    assert "roc_auc" not in june and june["status"] in ("pass", "warn", "fail")
    if (
        reference == "rolling"
    ):  # the two periods before each batch: 2024-03 and 2024-04, then 2024-04 and 2024-05
        assert may["reference"] == "the 2 periods before it (2024-03 to 2024-04)"
        assert may["reference_rows"] == 700
        assert june["reference"] == "the 2 periods before it (2024-04 to 2024-05)"
        assert june["reference_rows"] == 1700
    else:
        assert may["reference_rows"] == june["reference_rows"] == 400


def test_only_the_newest_batches_and_the_controls_are_monitored(monitored, tmp_path):
    got = _monitor(monitored, tmp_path, 90, 0, last=1)
    assert [(r["batch"], r["rows_compared"]) for r in got.rows] == [("2024-06", 700),
                                                                    ("control-same", 300)]  # fmt: skip


def test_a_batch_served_by_two_models_says_so(monitored, tmp_path):
    """A champion that failed part-way: the rest of the batch was its fallback's."""
    folder, train, holdout, _ = monitored
    shadow = [{"batch": b, "served_by": "v2, v1" if b == "2024-06" else "v2", "disagreement": 0.0}
              for b in ("reference", "2024-05", "2024-06", "control-same")]  # fmt: skip
    got = monitor.monitor_batches(folder / "scores.parquet", train, holdout,
                                  folder / "batches.parquet", shadow, SPEC, tmp_path, "b", RULES,
                                  max_rows=200)  # fmt: skip
    june = got.rows[1]
    assert "the batch was served by v2, v1: its figures mix both models" in june["warnings"]
    assert june["status"] in ("warn", "fail")
    assert not any("served by" in w for w in got.rows[0]["warnings"])


def test_unseen_values_turned_identifiers_keep_their_total_and_the_commonest(monkeypatch):
    """A category column that starts carrying identifiers: the counts kept stay bounded, the
    total stays exact, and the commonest values are the same whatever the chunks."""
    monkeypatch.setattr(stream, "UNSEEN_KEPT", 50)
    rows = _loans(3000, 7)
    rows["segment"] = [f"id-{i}" for i in range(3000)]
    rows.loc[::10, "segment"] = "startup"  # 300 rows, the commonest
    rows.loc[1::10, "segment"] = "gig"  # 300 rows
    known = {"segment": {"retail"}}
    chunked = stream.Gather(3000, SPEC, 0, known=known)
    for start in range(0, 3000, 200):
        chunked.add(rows.iloc[start : start + 200], np.full(200, 0.3))
        assert len(chunked.unseen["segment"]) <= 50 + 200
    found = chunked.done().unseen["segment"]
    whole = stream.from_frame(rows, np.full(3000, 0.3), SPEC, 0, known=known).unseen["segment"]
    assert found == whole
    assert found["rows"] == 3000 and list(found["values"])[:2] == ["gig", "startup"]


def test_scores_of_other_rows_are_refused(monitored, model, tmp_path):
    """Scores of an older batch file would be judged as these rows' scores: refused."""
    folder, train, holdout, windows = monitored
    stale = dict(windows, **{"2024-06": windows["2024-06"].head(650)})
    _scores_file(tmp_path / "scores.parquet", stale, model)
    with pytest.raises(DataError, match=r"scores.parquet, column '_batch': 650 scores for "
                                        r"'2024-06', which has 700 rows in batches.parquet"):  # fmt: skip
        monitor.monitor_batches(tmp_path / "scores.parquet", train, holdout,
                                folder / "batches.parquet", [], SPEC, tmp_path, "b", RULES)  # fmt: skip


def test_a_rolling_reference_takes_each_window_in_proportion():
    rolling = monitor.Rolling(periods=2, max_rows=400)
    for name, n in (("2024-01", 5000), ("2024-02", 1000), ("2024-03", 3000)):
        rolling.add(
            name, n, pd.DataFrame({"window": [name] * min(n, 400), "row": range(min(n, 400))})
        )
    said, rows, sample = rolling.reference()
    assert said == "the 2 periods before it (2024-02 to 2024-03)" and rows == 4000
    assert sample["window"].value_counts().to_dict() == {"2024-03": 300, "2024-02": 100}
    assert not sample.duplicated().any()


def test_a_batch_file_whose_batches_interleave_is_refused(tmp_path):
    rows = _loans(6, 1).assign(_batch=["b1", "b1", "b2", "b2", "b1", "b1"])
    rows.to_parquet(tmp_path / "batches.parquet")
    with pytest.raises(DataError, match=r"batches.parquet, column '_batch': the rows of batch "
                                        r"'b1' are not together"):  # fmt: skip
        stream.batch_index(tmp_path / "batches.parquet", chunk_rows=3)
