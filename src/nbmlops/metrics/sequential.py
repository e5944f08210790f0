"""A two-arm test that may be looked at after every label: the mixture sequential probability
ratio test (mSPRT) on the difference of two means, as an always-valid confidence sequence.

Each labelled record gives a loss (its Brier score, say). The test follows d = mean loss of the
champion's records minus that of the canary's (d > 0: the canary loses less), and stops when
its interval lies wholly on one side of the least saving worth a promotion. With a normal
mixture of width `tau` over d, the set

    d_hat ± sqrt(V (V + tau²) / tau² · (log((V + tau²) / V) + 2 log(1 / alpha))),
    V = s_champion² / n_champion + s_canary² / n_canary,

holds the true d at every number of labels at once with probability at least 1 - alpha
(Robbins' normal mixture; Johari et al., "Always valid inference", 2017). So the decision may
be read after every label, as often as one likes, and a stop is as sure as it says. The
variances are the samples' own (a plug-in, as in the published tests), and `tau` is
`TAU_SDS` pooled standard deviations of a loss: it sets which differences the test finds
soonest, not its validity. A fixed-sample test read after every label stops on noise far more
often than its alpha; `tests/code/metrics/test_sequential.py` measures both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: The mixture's width in pooled standard deviations of a loss.
TAU_SDS = 0.1
#: The outcomes of the test.
CHALLENGER, WORSE, NOT_BETTER, GO_ON = (
    "stop for the challenger: the canary is better by min_gain",
    "stop for the champion: the canary is worse",
    "stop for the champion: the canary is not better by min_gain",
    "go on",
)


@dataclass(frozen=True)
class Arm:
    """An arm's labelled losses as running sums: count, sum, sum of squares."""

    n: int = 0
    total: float = 0.0
    squares: float = 0.0

    @classmethod
    def of(cls, losses) -> Arm:
        x = np.asarray(losses, dtype=float)
        return cls(len(x), float(x.sum()), float((x * x).sum()))

    def __add__(self, other: Arm) -> Arm:
        return Arm(self.n + other.n, self.total + other.total, self.squares + other.squares)

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan

    @property
    def var(self) -> float:
        if self.n < 2:
            return math.nan
        return max(0.0, (self.squares - self.n * self.mean**2) / (self.n - 1))


@dataclass(frozen=True)
class Sequence:
    """The test's state: d's estimate and its always-valid interval, and the decision."""

    champion: Arm
    canary: Arm
    difference: float  # champion's mean loss minus the canary's; > 0: the canary is better
    low: float
    high: float
    decision: str
    labels_needed: int | None  # more labels, at today's split and figures, before a stop


def radius(v: float, tau2: float, alpha: float) -> float:
    """Half the width of the mixture's confidence set at variance `v` of the estimate."""
    return math.sqrt(v * (v + tau2) / tau2 * (math.log((v + tau2) / v) + 2 * math.log(1 / alpha)))


def decide(champion: Arm, canary: Arm, confidence: float = 0.95, min_gain: float = 0.02,
         min_labels: int = 300) -> Sequence:  # fmt: skip
    """The decision on two arms' losses so far, with m = `min_gain` times the champion's mean
    loss (the least saving worth a promotion).

    Stop for the champion when the whole interval is below 0 (the canary is worse) or below m
    (not better by enough); for the challenger when it is wholly above m; else go on. No
    decision before `min_labels` units in each arm (the variances are estimated from them).
    """
    d = champion.mean - canary.mean if champion.n and canary.n else math.nan
    if min(champion.n, canary.n) < max(min_labels, 2):
        return Sequence(champion, canary, d, -math.inf, math.inf, GO_ON, None)
    alpha = 1 - confidence
    pooled = ((champion.n - 1) * champion.var + (canary.n - 1) * canary.var) / (
        champion.n + canary.n - 2
    )
    tau2 = (TAU_SDS**2) * max(pooled, 1e-12)
    v = max(champion.var / champion.n + canary.var / canary.n, 1e-18)
    r = radius(v, tau2, alpha)
    margin = min_gain * champion.mean
    low, high = d - r, d + r
    decision = (WORSE if high < 0 else NOT_BETTER if high < margin else
                CHALLENGER if low > margin else GO_ON)  # fmt: skip
    needed = None
    if decision == GO_ON:
        needed = _labels_needed(d, v, tau2, alpha, margin, champion.n + canary.n)
    return Sequence(champion, canary, d, low, high, decision, needed)


def _labels_needed(d: float, v: float, tau2: float, alpha: float, margin: float,
                   n: int) -> int | None:  # fmt: skip
    """More labels, in both arms at today's split, until the interval would clear the margin
    either way if the estimate and the variances held; None past a hundredfold."""

    def stops(m: float) -> bool:
        r = radius(v / m, tau2, alpha)
        return d - r > margin or d + r < margin

    if not stops(100.0):
        return None
    lo, hi = 1.0, 100.0
    while hi - lo > 1 / max(n, 1):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if stops(mid) else (mid, hi)
    return math.ceil((hi - 1) * n)


#: Per-record losses the test can compare (a mean over records; ROC AUC is not one).
LOSSES = ("brier", "log_loss", "error")


def losses(y, proba, metric: str = "brier", threshold=0.5) -> np.ndarray:
    """Each record's loss under `metric`: squared error, log loss, or a wrong decision at
    `threshold` (one, or one per record)."""
    y, p = np.asarray(y, dtype=float), np.asarray(proba, dtype=float)
    if metric == "brier":
        return (p - y) ** 2
    if metric == "log_loss":
        q = np.clip(p, 1e-15, 1 - 1e-15)
        return -(y * np.log(q) + (1 - y) * np.log(1 - q))
    if metric == "error":
        return ((p >= np.asarray(threshold, dtype=float)).astype(float) != y).astype(float)
    raise ValueError(f"unknown loss {metric!r} (known: {', '.join(LOSSES)})")
