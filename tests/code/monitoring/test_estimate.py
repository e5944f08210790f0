"""Performance estimated before the labels arrive: honest intervals where the model is
calibrated, a warning on an estimated drop, and how the estimates did once labels came."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from nbmlops.monitoring import estimate, verdict
from nbmlops.monitoring.rules import MonitorRules

RULES = MonitorRules(max_regression={"roc_auc": 0.02, "pr_auc": 0.03, "brier": 0.02})


def _calibrated(n: int, signal: float, seed: int):
    """Scores whose probability is the true one: labels drawn from it."""
    rng = np.random.default_rng(seed)
    p = 1 / (1 + np.exp(-(signal * rng.normal(size=n) - 1.2)))
    return (rng.random(n) < p).astype(int), p


def test_the_realized_figures_of_calibrated_batches_fall_inside_the_intervals():
    rows, inside = [], {m: 0 for m in estimate.ESTIMATED}
    for seed in range(40):
        y, p = _calibrated(1500, 1.3, seed)
        found = estimate.estimate(p, seed=seed)
        real = {"roc_auc": roc_auc_score(y, p), "pr_auc": average_precision_score(y, p),
                "brier": float(np.mean((p - y) ** 2))}  # fmt: skip
        for m in inside:
            inside[m] += found[m].low <= real[m] <= found[m].high
        rows.append(real | {"estimated": {m: [e.value, e.low, e.high] for m, e in found.items()}})
    assert all(0.85 <= k / 40 for k in inside.values()), inside  # 95 % intervals
    covered = estimate.coverage(rows)
    assert {m: c["inside"] for m, c in covered.items()} == {m: k / 40 for m, k in inside.items()}
    assert covered["roc_auc"]["batches"] == 40
    assert covered["roc_auc"]["mean_absolute_error"] < 0.02
    assert covered["brier"]["mean_absolute_error"] < 0.01


def test_labels_that_left_the_probabilities_fall_outside():
    """The same scores, twice the positives they promise: calibration broke, the intervals
    miss, and coverage says so (no estimate without labels can see this)."""
    y, p = _calibrated(4000, 1.3, seed=50)
    found = estimate.estimate(p)
    flipped = np.where(np.random.default_rng(51).random(len(y)) < 0.25, 1, y)
    brier = float(np.mean((p - flipped) ** 2))
    assert not found["brier"].low <= brier <= found["brier"].high
    row = {"brier": brier, "estimated": {"brier": [found["brier"].value, found["brier"].low,
                                                   found["brier"].high]}}  # fmt: skip
    assert estimate.coverage([row])["brier"]["inside"] == 0.0


def test_a_model_surer_than_it_should_be_is_estimated_through_the_held_out_calibration():
    """Served scores pushed towards 0 and 1: drawn from the scores themselves the estimate is
    far too good; through the held-out window's recalibration it finds the served scores'
    own ROC AUC and Brier."""

    def served(p):
        return 1 / (1 + np.exp(-3 * np.log(p / (1 - p))))

    y_held, p_held = _calibrated(20_000, 1.3, seed=80)
    fit = estimate.recalibration(y_held, served(p_held))
    y, p = _calibrated(4000, 1.3, seed=81)
    s = served(p)
    brier = float(np.mean((s - y) ** 2))
    found = estimate.estimate(s, fit)
    assert found["brier"].low <= brier <= found["brier"].high
    assert found["roc_auc"].low <= roc_auc_score(y, s) <= found["roc_auc"].high
    naive = estimate.estimate(s)
    assert naive["brier"].high < brier  # the scores taken at their word


def _unlabelled_row(p) -> dict:
    return {"rows": len(p), "drift_share": 0.0, "features_compared": 10, "drifted_features": [],
            "prediction_drift": False, "prediction_drift_score": 0.1,
            "expected_positive_rate": float(np.mean(p))}  # fmt: skip


def test_an_unlabelled_batch_warns_on_an_estimated_drop_and_not_on_a_like_one():
    held = verdict.held_out(*_calibrated(20_000, 1.3, seed=60))
    _, like = _calibrated(3000, 1.3, seed=61)
    judged = verdict.judge(_unlabelled_row(like), RULES, held, None, {}, estimate.estimate(like))
    assert judged == verdict.Verdict("pass", [], [])
    _, blurred = _calibrated(3000, 0.6, seed=62)  # the model separates the classes less
    found = estimate.estimate(blurred)
    judged = verdict.judge(_unlabelled_row(blurred), RULES, held, None, {}, found)
    assert judged.status == "warn" and judged.reasons == []
    assert any(w.startswith("estimated before labels: roc_auc ") for w in judged.warnings)


@pytest.mark.parametrize("rows", [1, 200_001])
def test_one_row_or_many_distinct_scores_are_estimated_in_bounded_memory(rows):
    p = np.random.default_rng(70).random(rows)
    found = estimate.estimate(p, rounds=20)
    assert found["brier"].rows == rows
    if rows > 1:
        assert found["roc_auc"].low < found["roc_auc"].value < found["roc_auc"].high
    else:  # one row never holds both classes: no interval, and no error
        assert np.isnan(found["roc_auc"].low)
