"""How sure a measured metric is: 95 % intervals for ROC AUC, PR AUC and Brier, and the paired
difference of two models' ROC AUC on the same rows.

A batch of 2,000 rows measures ROC AUC to about ±0.03; a monitor that fails every batch whose
point estimate dips below a line fails on noise. These intervals let it fail only where the
evidence does, and say how much evidence there is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Estimate:
    """A metric's value with its 95 % interval and the rows it rests on."""

    value: float
    low: float
    high: float
    rows: int

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _midranks(x: np.ndarray) -> np.ndarray:
    return st.rankdata(x, method="average")


def _placements(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components: per positive, the share of negatives it outranks (ties
    count half), and per negative, the share of positives that outrank it."""
    pos, neg = p[y == 1], p[y == 0]
    m, n = len(pos), len(neg)
    all_ranks = _midranks(np.concatenate([pos, neg]))
    v10 = (all_ranks[:m] - _midranks(pos)) / n
    v01 = 1.0 - (all_ranks[m:] - _midranks(neg)) / m
    return v10, v01


def _labels(y, *probas) -> tuple[np.ndarray, ...]:
    y = np.asarray(y).astype(int)
    return (y, *(np.asarray(p, dtype=float) for p in probas))


def roc_auc(y, proba) -> Estimate:
    """ROC AUC with DeLong's interval (logit-transformed, so it stays inside 0..1)."""
    y, p = _labels(y, proba)
    if len(np.unique(y)) < 2:
        return Estimate(math.nan, math.nan, math.nan, len(y))
    v10, v01 = _placements(y, p)
    auc = float(v10.mean())
    var = v10.var(ddof=1) / len(v10) + v01.var(ddof=1) / len(v01)
    return roc_auc_estimate(auc, var, len(y))


def roc_auc_estimate(auc: float, var: float, rows: int) -> Estimate:
    """ROC AUC with DeLong's variance `var`, as an interval on the logit scale."""
    low, high = _logit_interval(auc, math.sqrt(var))
    return Estimate(auc, low, high, rows)


def _logit_interval(value: float, se: float) -> tuple[float, float]:
    if value <= 0.0 or value >= 1.0 or se == 0:
        return value, value
    eta = math.log(value / (1 - value))
    tau = se / (value * (1 - value))
    return _expit(eta - Z95 * tau), _expit(eta + Z95 * tau)


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def pr_auc(y, proba) -> Estimate:
    """Average precision with the logit interval of Boyd, Eng and Page (2013), which rests on
    the number of positives."""
    from sklearn.metrics import average_precision_score

    y, p = _labels(y, proba)
    positives = int(y.sum())
    if positives == 0 or positives == len(y):
        return Estimate(math.nan, math.nan, math.nan, len(y))
    return pr_auc_estimate(float(average_precision_score(y, p)), positives, len(y))


def pr_auc_estimate(ap: float, positives: int, rows: int) -> Estimate:
    """Average precision `ap` of `positives` positives with its logit interval."""
    if not 0 < ap < 1:
        return Estimate(ap, ap, ap, rows)
    eta, tau = math.log(ap / (1 - ap)), 1 / math.sqrt(positives * ap * (1 - ap))
    return Estimate(ap, _expit(eta - Z95 * tau), _expit(eta + Z95 * tau), rows)


def average_precision_at(positives, negatives, rate: float) -> float:
    """Average precision of a ranking at another share of positives: `positives[i]` and
    `negatives[i]` are the rows at the i-th lowest score (or score bin), and the positives are
    weighted so that they make up `rate` of the rows. The same ranking then has the same true
    and false positive rates at each threshold, and precision rate·TPR / (rate·TPR + (1 −
    rate)·FPR). At the ranking's own share it is sklearn's average precision of those rows."""
    tp = np.cumsum(np.asarray(positives, dtype=float)[::-1])
    fp = np.cumsum(np.asarray(negatives, dtype=float)[::-1])
    tpr, fpr = tp / tp[-1], fp / fp[-1]
    precision = rate * tpr / (rate * tpr + (1 - rate) * fpr)
    return float((np.diff(tpr, prepend=0.0) * precision).sum())


def brier(y, proba) -> Estimate:
    """Brier score (mean squared error of the probability) with a normal interval."""
    y, p = _labels(y, proba)
    errors = (p - y) ** 2
    sd = float(errors.std(ddof=1)) if len(errors) > 1 else math.nan
    return mean_estimate(float(errors.mean()), sd, len(y))


def mean_estimate(value: float, sd: float, rows: int) -> Estimate:
    """A mean of `rows` values with standard deviation `sd`, with its normal interval."""
    se = sd / math.sqrt(rows) if rows > 1 else math.nan
    return Estimate(value, value - Z95 * se, value + Z95 * se, rows)


ESTIMATORS = {"roc_auc": roc_auc, "pr_auc": pr_auc, "brier": brier}


@dataclass(frozen=True)
class PairedDifference:
    """Model B's ROC AUC minus model A's on the same rows, with DeLong's paired interval and
    the two-sided p-value of no difference."""

    a: float
    b: float
    difference: float
    low: float
    high: float
    p_value: float
    rows: int


def roc_auc_difference(y, proba_a, proba_b) -> PairedDifference:
    """DeLong's test for two correlated ROC AUCs: both models scored the same rows, so the
    difference is far surer than either AUC alone."""
    y, pa, pb = _labels(y, proba_a, proba_b)
    if len(np.unique(y)) < 2:
        nan = math.nan
        return PairedDifference(nan, nan, nan, nan, nan, nan, len(y))
    a10, a01 = _placements(y, pa)
    b10, b01 = _placements(y, pb)
    s10 = np.cov(np.vstack([a10, b10]))
    s01 = np.cov(np.vstack([a01, b01]))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / len(a10) + (
        s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]
    ) / len(a01)
    auc_a, auc_b = float(a10.mean()), float(b10.mean())
    diff = auc_b - auc_a
    se = math.sqrt(max(var, 0.0))
    p = float(2 * st.norm.sf(abs(diff) / se)) if se > 0 else (1.0 if diff == 0 else 0.0)
    return PairedDifference(auc_a, auc_b, diff, diff - Z95 * se, diff + Z95 * se, p, len(y))
