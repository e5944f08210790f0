"""The sequential test: valid when looked at after every few labels, and it stops."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nbmlops.metrics import sequential as sq
from nbmlops.metrics.intervals import Z95


def _run(seed: int, better: bool, share: float = 0.1, labels: int = 30_000, look: int = 25,
         min_gain: float = 0.05) -> tuple[str, int]:  # fmt: skip
    """A simulated experiment: the canary answers `share` of the records; with `better` it is
    the true model, else the same model as the champion. (decision, labels at the stop)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=labels)
    y = (rng.random(labels) < 1 / (1 + np.exp(-(2 * x - 1.5)))).astype(int)
    champion = 1 / (1 + np.exp(-(x - 1.2)))
    canary = 1 / (1 + np.exp(-(2 * x - 1.5))) if better else champion
    arm = rng.random(labels) < share
    lc, lk = sq.losses(y, champion), sq.losses(y, canary)
    c, k = np.cumsum(np.where(arm, 0, lc)), np.cumsum(np.where(arm, lk, 0))
    c2, k2 = np.cumsum(np.where(arm, 0, lc**2)), np.cumsum(np.where(arm, lk**2, 0))
    nk = np.cumsum(arm)
    for i in range(look, labels, look):
        j = i - 1
        found = sq.decide(sq.Arm(int(i - nk[j]), c[j], c2[j]), sq.Arm(int(nk[j]), k[j], k2[j]),
                          0.95, min_gain, 100)  # fmt: skip
        if found.decision != sq.GO_ON:
            return found.decision, i
    return sq.GO_ON, labels


def test_looking_after_every_25_labels_stops_wrongly_no_more_often_than_alpha():
    """Two arms with the same model: a stop either way is wrong. Over 300 simulated
    experiments of 30,000 labels each, looked at 1,200 times, the share of wrong stops stays
    within alpha (5 %), where a fixed-sample z-test read as often stops wrongly far more."""
    wrong = sum(_run(s, better=False, min_gain=0.0)[0] != sq.GO_ON for s in range(300))
    assert wrong / 300 <= 0.05 + 1.96 * math.sqrt(0.05 * 0.95 / 300)
    naive = 0
    for seed in range(100):  # the fixed-sample interval, d ± 1.96 se, read at the same looks
        rng = np.random.default_rng(seed)
        x = rng.normal(size=30_000)
        y = (rng.random(30_000) < 1 / (1 + np.exp(-(2 * x - 1.5)))).astype(int)
        loss, arm = sq.losses(y, 1 / (1 + np.exp(-(x - 1.2)))), rng.random(30_000) < 0.1
        for i in range(1000, 30_000, 25):
            a, b = sq.Arm.of(loss[:i][~arm[:i]]), sq.Arm.of(loss[:i][arm[:i]])
            se = math.sqrt(a.var / a.n + b.var / b.n)
            if abs(a.mean - b.mean) > Z95 * se:
                naive += 1
                break
    assert naive / 100 > 3 * (wrong / 300 + 0.01)


def test_a_better_canary_is_found_and_an_equal_one_is_stopped_for_the_champion():
    """A canary 8.6 % better (Brier 0.128 against 0.140) is found; one no better is stopped
    for the champion once the interval rules out a 5 % saving, and almost never promoted."""
    better = [_run(s, better=True, labels=60_000, min_gain=0.0) for s in range(40)]
    assert sum(d == sq.CHALLENGER for d, _ in better) >= 36
    same = [_run(s, better=False, labels=100_000, look=50, min_gain=0.05) for s in range(40)]
    assert sum(d == sq.CHALLENGER for d, _ in same) <= 2
    assert sum(d == sq.NOT_BETTER for d, _ in same) >= 20


def test_a_worse_canary_is_stopped_and_no_decision_comes_before_min_labels():
    y = np.tile([0, 1], 200)
    good, bad = sq.Arm.of(sq.losses(y, np.where(y, 0.8, 0.2))), sq.Arm.of(sq.losses(y, 1 - y))
    assert sq.decide(good, bad).decision == sq.WORSE
    assert sq.decide(bad, good).decision == sq.CHALLENGER
    few = sq.Arm.of(sq.losses(y[:50], 1 - y[:50]))
    found = sq.decide(good, few, min_labels=100)
    assert found.decision == sq.GO_ON and found.low == -math.inf and found.labels_needed is None


def test_labels_needed_is_how_many_more_labels_make_it_stop_if_the_figures_hold():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.20, 0.1, 400), rng.normal(0.18, 0.1, 400)
    found = sq.decide(sq.Arm.of(a), sq.Arm.of(b), min_gain=0.0)
    assert found.decision == sq.GO_ON and found.labels_needed > 0
    m = (800 + found.labels_needed) / 800  # the same figures with that many labels
    v = (np.var(a, ddof=1) + np.var(b, ddof=1)) / 400 / m
    tau2 = sq.TAU_SDS**2 * (np.var(a, ddof=1) + np.var(b, ddof=1)) / 2
    assert found.difference - sq.radius(v, tau2, 0.05) > 0
    v_less = v * m / (m - 2 / 800)
    assert found.difference - sq.radius(v_less, tau2, 0.05) <= 0


@pytest.mark.parametrize("metric", sq.LOSSES)
def test_each_loss_is_a_mean_over_records(metric):
    y, p = np.array([0, 1, 1, 0]), np.array([0.1, 0.9, 0.4, 0.6])
    found = sq.losses(y, p, metric, threshold=0.5)
    expected = {"brier": (p - y) ** 2, "log_loss": -np.log(np.where(y, p, 1 - p)),
                "error": np.array([0, 0, 1, 1])}[metric]  # fmt: skip
    assert found == pytest.approx(expected)
