"""A batch's figures from counts per probability bin agree with the figures from every row."""

import math

import numpy as np
import pytest

from nbmlops.metrics.scores import classification_metrics
from nbmlops.metrics.tally import Tally
from nbmlops.monitoring import verdict

EXACT = ("f1", "precision", "recall", "accuracy", "brier", "log_loss", "positive_rate",
         "predicted_positive_rate", "rows")  # fmt: skip


def _batch(n: int, seed: int, ties: bool = False):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.15).astype(float)
    p = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.3 * y - 1.5)))
    return y, (np.round(p * 40) / 40 if ties else p)  # a tree model's few distinct values


def _counted(y, p, chunk: int) -> Tally:
    tally = Tally()
    for start in range(0, len(y), chunk):
        tally.add(y[start : start + chunk], p[start : start + chunk])
    return tally


def _compare(tally: Tally, y, p, rank_tolerance: float) -> None:
    exact, counted = classification_metrics(y, p), tally.metrics()
    for name in EXACT:
        assert counted[name] == pytest.approx(exact[name], rel=1e-9), name
    assert abs(counted["roc_auc"] - exact["roc_auc"]) <= tally.roc_auc_error() + 1e-12
    assert counted["roc_auc"] == pytest.approx(exact["roc_auc"], abs=rank_tolerance)
    assert counted["pr_auc"] == pytest.approx(exact["pr_auc"], abs=rank_tolerance)
    intervals, found = verdict.estimates(y, p), tally.estimates()
    for name, estimate in intervals.items():
        assert found[name].low == pytest.approx(estimate.low, abs=rank_tolerance), name
        assert found[name].high == pytest.approx(estimate.high, abs=rank_tolerance), name
        assert found[name].rows == estimate.rows
    calibration, counted = verdict.calibration(y, p), tally.calibration()
    for name in ("mean_proba", "observed_rate", "calibration_gap"):
        assert counted[name] == pytest.approx(calibration[name], rel=1e-9), name
    for mine, theirs in zip(counted["reliability"], calibration["reliability"], strict=True):
        assert mine[:2] == pytest.approx(theirs[:2], abs=rank_tolerance)


@pytest.mark.parametrize("ties", [False, True])
def test_counts_give_every_rows_figures(ties):
    """Below `bins` distinct probabilities every figure is the exact one."""
    y, p = _batch(60_000, 1, ties)
    tally = _counted(y, p, 7_000)
    assert tally.exact and tally.roc_auc_error() == 0
    _compare(tally, y, p, rank_tolerance=1e-12)
    counted, calibration = tally.calibration(), verdict.calibration(y, p)
    assert len(counted["reliability"]) == len(calibration["reliability"])
    for mine, theirs in zip(counted["reliability"], calibration["reliability"], strict=True):
        assert mine == pytest.approx(theirs, rel=1e-12)  # the same tenths, the same rows


def test_past_bins_distinct_probabilities_the_counts_go_to_bins():
    """Memory stays at `bins` entries; ROC AUC moves by no more than the bound it states."""
    y, p = _batch(60_000, 4)
    tally = Tally(bins=4096)
    for start in range(0, 60_000, 1_000):
        tally.add(y[start : start + 1_000], p[start : start + 1_000])
        assert len(tally.keys) <= 4096 + 1_000
    assert not tally.exact and len(tally.keys) <= 4096
    error = tally.roc_auc_error()
    assert 0 < error < 1e-3
    _compare(tally, y, p, rank_tolerance=2e-3)


def test_chunks_in_any_size_give_the_same_counts():
    y, p = _batch(9_001, 2)
    one, many = _counted(y, p, 9_001), _counted(y, p, 97)
    assert one.metrics() == pytest.approx(many.metrics(), rel=1e-12)
    assert np.array_equal(one.keys, many.keys) and np.array_equal(one.positives, many.positives)


def test_unlabelled_rows_and_one_class():
    y, p = _batch(1_000, 3)
    y[::50] = np.nan
    partly = _counted(y, p, 300)
    assert partly.rows == 1_000 and partly.unlabelled == 20 and not partly.labelled
    assert not partly.both_classes and math.isnan(partly.roc_auc().value)
    negatives = _counted(np.zeros(500), p[:500], 200)
    assert negatives.labelled and not negatives.both_classes and negatives.only_label == 0
    assert math.isnan(negatives.pr_auc().value) and math.isnan(negatives.roc_auc_error())


def test_a_nan_probability_is_refused():
    with pytest.raises(ValueError, match="1 predicted probabilities are NaN"):
        Tally().add(np.array([1.0, 0.0]), np.array([0.4, np.nan]))
