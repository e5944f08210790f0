"""What fails a monitored batch, what warns, and how sure each figure is."""

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from nbmlops.errors import ConfigError
from nbmlops.metrics import intervals
from nbmlops.monitoring import monitor, verdict
from nbmlops.monitoring.rules import MonitorRules

RULES = MonitorRules(max_regression={"roc_auc": 0.02, "pr_auc": 0.03, "brier": 0.02})


def _labelled(n: int, rate: float, signal: float, seed: int, bias: float = 0.0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rate).astype(int)
    score = rng.normal(size=n) + signal * y
    return y, 1 / (1 + np.exp(-(score - 1 + bias)))


def _bootstrap(metric, y, p, seed=0, rounds=300):
    rng = np.random.default_rng(seed)
    picks = (rng.integers(0, len(y), len(y)) for _ in range(rounds))
    return np.percentile([metric(y[i], p[i]) for i in picks], [2.5, 97.5])


@pytest.mark.parametrize(("estimate", "metric"), [(intervals.roc_auc, roc_auc_score),
                                                  (intervals.pr_auc, average_precision_score)])  # fmt: skip
def test_intervals_match_the_metric_and_a_bootstrap(estimate, metric):
    y, p = _labelled(3000, 0.25, 0.6, seed=1)
    p = np.round(p, 2)  # ties, as real scores have
    found = estimate(y, p)
    low, high = _bootstrap(metric, y, p)
    assert found.value == pytest.approx(metric(y, p), abs=1e-12)
    assert found.low == pytest.approx(low, abs=0.006) and found.high == pytest.approx(
        high, abs=0.006
    )
    assert found.rows == 3000


def test_brier_interval_and_one_class_has_no_auc():
    y, p = _labelled(2000, 0.3, 0.5, seed=2)
    found = intervals.brier(y, p)
    assert found.value == pytest.approx(np.mean((p - y) ** 2))
    low, high = _bootstrap(lambda a, b: np.mean((b - a) ** 2), y, p)
    assert found.low == pytest.approx(low, abs=0.003) and found.high == pytest.approx(
        high, abs=0.003
    )
    assert math.isnan(intervals.roc_auc(np.zeros(50), p[:50]).value)
    assert math.isnan(intervals.pr_auc(np.zeros(50), p[:50]).value)


def test_paired_difference_is_surer_than_either_auc_and_matches_a_bootstrap():
    y, a = _labelled(3000, 0.25, 0.6, seed=3)
    rng = np.random.default_rng(4)
    b = 1 / (1 + np.exp(-(np.log(a / (1 - a)) + rng.normal(0, 0.8, len(a)))))  # a, plus noise
    diff = intervals.roc_auc_difference(y, a, b)
    assert diff.difference == pytest.approx(roc_auc_score(y, b) - roc_auc_score(y, a))
    rng = np.random.default_rng(5)
    boot = []
    for _ in range(300):
        i = rng.integers(0, len(y), len(y))
        boot.append(roc_auc_score(y[i], b[i]) - roc_auc_score(y[i], a[i]))
    low, high = np.percentile(boot, [2.5, 97.5])
    assert diff.low == pytest.approx(low, abs=0.005) and diff.high == pytest.approx(high, abs=0.005)
    single = intervals.roc_auc(y, a)
    assert diff.high - diff.low < single.high - single.low
    assert diff.difference < 0 and diff.p_value < 0.01  # noise only hurts
    same = intervals.roc_auc_difference(y, a, a)
    assert same.difference == 0 and same.p_value == 1.0


def _row(y, p, drift_share=0.1, drifted=(), prediction_drift=False):
    row = {"rows": len(y), "drift_share": drift_share, "features_compared": 10,
           "drifted_features": list(drifted), "prediction_drift": prediction_drift,
           "prediction_drift_score": 0.2}  # fmt: skip
    return row | verdict.calibration(y, p)


def _judge(y, p, held, **row):
    return verdict.judge(_row(y, p, **row), RULES, held, verdict.estimates(y, p), {})


def test_a_batch_like_the_held_out_window_passes_and_drift_over_the_share_fails():
    held = verdict.held_out(*_labelled(20_000, 0.3, 0.8, seed=6))
    y, p = _labelled(5000, 0.3, 0.8, seed=7)
    assert _judge(y, p, held) == verdict.Verdict("pass", [], [])
    drifted = [f"f{i}" for i in range(6)]
    judged = _judge(y, p, held, drift_share=0.6, drifted=drifted)
    assert judged.status == "fail"
    assert judged.reasons == ["data drift in 60% of the model's features (6 of 10: f0, f1, f2, "
                              "f3, f4, f5) > 50%"]  # fmt: skip
    at_the_line = _judge(y, p, held, drift_share=0.5, drifted=drifted[:5])
    assert at_the_line.status == "pass"  # the share must be over the threshold


def test_prediction_drift_alone_only_warns():
    held = verdict.held_out(*_labelled(20_000, 0.3, 0.8, seed=8))
    y, p = _labelled(5000, 0.3, 0.8, seed=9)
    judged = _judge(y, p, held, prediction_drift=True)
    assert judged.status == "warn" and judged.reasons == []
    assert judged.warnings[0].startswith("prediction drift")


def test_a_weaker_model_fails_with_the_numbers_and_a_small_batch_only_warns():
    held = verdict.held_out(*_labelled(20_000, 0.3, 0.8, seed=10))
    y, p = _labelled(20_000, 0.3, 0.4, seed=11)  # ranks far worse
    judged = _judge(y, p, held)
    line = held["metrics"]["roc_auc"] - 0.02
    auc = intervals.roc_auc(y, p)
    assert judged.status == "fail"
    assert judged.reasons[0] == (f"roc_auc {auc} < {line:.3f} (held-out "
                                 f"{held['metrics']['roc_auc']:.3f} − 0.02)")  # fmt: skip
    y, p = _labelled(300, 0.3, 0.8, seed=12)  # 300 rows: ROC AUC to about ±0.06
    auc = intervals.roc_auc(y, p).value
    near = held | {"metrics": held["metrics"] | {"roc_auc": auc + 0.025}}  # line: auc + 0.005
    small = _judge(y, p, near)
    assert small.status == "warn" and small.reasons == []
    assert any(w.startswith("roc_auc ") and "inside the 95 % interval" in w
               for w in small.warnings)  # fmt: skip


def test_a_change_of_base_rate_alone_does_not_fail_pr_auc_or_brier():
    """The same model on a batch with half the positives: its PR AUC and Brier fall and rise
    by the base rate alone; the scaled lines see a model that has not changed."""
    rng = np.random.default_rng(13)
    n = 40_000
    y_held = (rng.random(n) < 0.3).astype(int)
    y_batch = (rng.random(n) < 0.15).astype(int)

    def calibrated(y, seed):  # the true probability given the score, at that base rate
        s = np.random.default_rng(seed).normal(size=len(y)) + 0.8 * y
        rate = y.mean()
        odds = rate / (1 - rate) * np.exp(0.8 * s - 0.32)
        return odds / (1 + odds)

    held = verdict.held_out(y_held, calibrated(y_held, 14))
    p = calibrated(y_batch, 15)
    found = verdict.estimates(y_batch, p)
    assert found["pr_auc"].high < held["metrics"]["pr_auc"] - 0.03  # unscaled, it would fail
    judged = _judge(y_batch, p, held)
    assert judged.reasons == [] and judged.status == "pass", judged


def test_average_precision_at_another_rate_is_the_same_ranking_with_other_positives():
    y, p = _labelled(4000, 0.25, 0.9, seed=30)
    p = np.round(p, 3)  # ties, as binned scores have
    keys, which = np.unique(p, return_inverse=True)
    pos = np.bincount(which, weights=y, minlength=len(keys))
    neg = np.bincount(which, minlength=len(keys)) - pos
    assert intervals.average_precision_at(pos, neg, y.mean()) == pytest.approx(
        average_precision_score(y, p), abs=1e-12
    )
    # the same scores given to a population with 70 % positives: a ranking's AP at that rate
    rng = np.random.default_rng(31)
    many = np.r_[rng.choice(p[y == 1], 28_000), rng.choice(p[y == 0], 12_000)]
    labels = np.r_[np.ones(28_000), np.zeros(12_000)]
    assert intervals.average_precision_at(pos, neg, 0.7) == pytest.approx(
        average_precision_score(labels, many), abs=0.01
    )


def test_a_scaled_line_stays_within_the_metrics_range_and_a_perfect_batch_passes():
    """Held out at 10 % positives with PR AUC 0.5; a batch at 60 % positives, perfectly ranked:
    scaled by the ratio of rates the line was 0.47 × 6 = 2.8, which no batch can reach."""
    held = verdict.held_out(*_labelled(20_000, 0.1, 1.5, seed=32))
    rng = np.random.default_rng(33)
    y = (rng.random(3000) < 0.6).astype(int)
    p = np.where(y == 1, rng.uniform(0.6, 0.99, len(y)), rng.uniform(0.01, 0.4, len(y)))
    for metric in ("roc_auc", "pr_auc", "brier"):
        line = verdict._line(metric, held, RULES.max_regression[metric], 0.6)
        assert 0.0 <= line <= 1.0, (metric, line)
    found = verdict.estimates(y, p)
    assert found["pr_auc"].value == 1.0
    judged = _judge(y, p, held)
    assert not any(r.startswith("pr_auc") for r in judged.reasons + judged.warnings), judged


def test_a_model_that_no_longer_fits_the_base_rate_fails_brier_and_warns_on_calibration():
    held = verdict.held_out(*_labelled(20_000, 0.3, 0.8, seed=16))
    y, p = _labelled(20_000, 0.12, 0.8, seed=17, bias=1.0)  # fewer positives, higher scores
    judged = _judge(y, p, held)
    assert judged.status == "fail"
    assert any(r.startswith("brier ") and "scaled to this batch's positive rate" in r
               for r in judged.reasons)  # fmt: skip
    said = f"calibration moved: observed rate {y.mean():.1%} against {p.mean():.1%} predicted"
    assert any(w.startswith(said) for w in judged.warnings)


def test_unseen_values_warn_past_their_share():
    held = verdict.held_out(*_labelled(5000, 0.3, 0.8, seed=18))
    y, p = _labelled(1000, 0.3, 0.8, seed=19)
    few = {"dest": {"rows": 5, "values": {"ABQ": 5}}}
    many = {"dest": {"rows": 50, "values": {"ABQ": 30, "MVY": 20}}}
    row, found = _row(y, p), verdict.estimates(y, p)
    assert verdict.judge(row, RULES, held, found, few).status == "pass"
    judged = verdict.judge(row, RULES, held, found, many)
    assert judged.status == "warn"
    assert judged.warnings == ["dest: 5.0% of rows hold values unseen in training (more than "
                               "1.0%): 'ABQ' (30 rows), 'MVY' (20 rows)"]  # fmt: skip


def test_a_reference_of_no_known_kind_is_refused():
    with pytest.raises(ConfigError, match="monitor_reference is 'last'"):
        monitor.check_reference("last", 3)
    with pytest.raises(ConfigError, match="monitor_rolling_periods must be a whole number"):
        monitor.check_reference("rolling", 0)
