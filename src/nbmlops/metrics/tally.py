"""A batch's classification figures from counts gathered chunk by chunk: memory is the counts'.

The monitor judges batches of any size. What it needs of every row (ROC AUC and PR AUC with
their intervals, Brier, log loss, the decisions at the threshold, calibration) comes from the
positives and negatives at each distinct predicted probability, and from exact sums: the same
figures as from every row. A batch with more than `BINS` distinct probabilities (about a
million) is counted in `BINS` equal bins of the probability instead, so memory stays bounded
whatever the rows. Then the sums, the counts at the threshold and what is made of them (Brier,
log loss, F1, precision, recall, accuracy, rates) stay exact; ROC AUC, its DeLong interval, PR
AUC and the reliability tenths take the probabilities of one bin (a millionth wide) as tied,
and `roc_auc_error` is the most that can move ROC AUC: half the share of positive-negative
pairs that share a bin where their probabilities differ."""

from __future__ import annotations

import math

import numpy as np

from ..spec import THRESHOLD
from . import intervals
from .scores import EPSILON

RELIABILITY_BINS = 10  # tenths of the predicted probability, as verdict's curve

BINS = 1 << 20


def _runs(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of sorted keys and where each run of them starts."""
    if not len(sorted_keys):
        return sorted_keys, np.empty(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    return sorted_keys[starts], starts


def _variance_of_mean(counts: np.ndarray, values: np.ndarray, mean: float, rows: int) -> float:
    """The variance of the mean of `rows` values, `counts[i]` of them equal to `values[i]`."""
    if rows < 2:
        return math.nan
    return float((counts * (values - mean) ** 2).sum()) / (rows - 1) / rows


class Tally:
    """Counts and sums of one batch's labels and predicted probabilities, added chunk by chunk.

    Each distinct probability is kept apart (exact figures) until there are more than `bins`
    of them; from then on, equal bins of the probability. Only occupied entries are kept,
    sorted, so a small batch costs little and a large one at most `bins` entries."""

    def __init__(self, bins: int = BINS):
        self.bins = bins
        self.exact = True  # keys are the probabilities themselves, not bins
        self.keys = np.empty(0)  # ascending
        self.positives = np.empty(0, dtype=np.int64)
        self.negatives = np.empty(0, dtype=np.int64)
        self.proba_sums = np.empty(0)
        self.lowest = self.highest = None  # per bin, once binned: whether its probabilities differ
        self.rows = self.unlabelled = 0
        self.tp = self.fp = self.tn = self.fn = 0
        self.errors = self.errors_squared = self.log_loss = 0.0

    def _key(self, p: np.ndarray) -> np.ndarray:
        return p if self.exact else np.clip(np.floor(p * self.bins), 0, self.bins - 1)

    def add(self, y, proba, threshold=THRESHOLD) -> None:
        """The next rows: labels (1, 0, or NaN for none yet), predicted probabilities, and the
        decision threshold of the model that gave them (one, or one per row)."""
        y, p = np.asarray(y, dtype=np.float64), np.asarray(proba, dtype=np.float64)
        if np.isnan(p).any():
            raise ValueError(f"{int(np.isnan(p).sum())} predicted probabilities are NaN")
        t = np.broadcast_to(np.asarray(threshold, dtype=np.float64), p.shape)
        self.rows += len(p)
        known = ~np.isnan(y)
        self.unlabelled += int(len(y) - known.sum())
        y, p, t = y[known], p[known], t[known]
        positive = y == 1
        if len(p):  # per entry: rows, positives, sum (and in bins, lowest and highest)
            order = np.argsort(p, kind="stable")
            ordered = p[order]
            keys, starts = _runs(self._key(ordered))
            pos = np.add.reduceat(positive[order].astype(np.int64), starts)
            rows = np.diff(np.r_[starts, len(ordered)])
            added = {"positives": pos, "negatives": rows - pos,
                     "proba_sums": np.add.reduceat(ordered, starts)}  # fmt: skip
            if not self.exact:
                added |= {"lowest": np.minimum.reduceat(ordered, starts),
                          "highest": np.maximum.reduceat(ordered, starts)}  # fmt: skip
            self._merge(keys, added)
            if self.exact and len(self.keys) > self.bins:
                self._to_bins()
        decided = p >= t
        self.tp += int((decided & positive).sum())
        self.fp += int((decided & ~positive).sum())
        self.fn += int((~decided & positive).sum())
        self.tn += int((~decided & ~positive).sum())
        errors = (p - y) ** 2
        self.errors += float(errors.sum())
        self.errors_squared += float((errors**2).sum())
        clipped = np.clip(p, EPSILON, 1 - EPSILON)
        self.log_loss -= float((y * np.log(clipped) + (1 - y) * np.log(1 - clipped)).sum())

    def _to_bins(self) -> None:
        """From distinct probabilities to bins: neighbours in one bin become one entry."""
        self.exact = False
        keys, starts = _runs(self._key(self.keys))
        self.lowest = np.minimum.reduceat(self.keys, starts)
        self.highest = np.maximum.reduceat(self.keys, starts)
        for name in ("positives", "negatives", "proba_sums"):
            setattr(self, name, np.add.reduceat(getattr(self, name), starts))
        self.keys = keys

    #: How each kept array takes in another's entry for the same key, and its empty value.
    COMBINE = {"positives": (np.add, 0), "negatives": (np.add, 0), "proba_sums": (np.add, 0.0),
               "lowest": (np.minimum, np.inf), "highest": (np.maximum, -np.inf)}  # fmt: skip

    def _merge(self, keys: np.ndarray, added: dict[str, np.ndarray]) -> None:
        merged = _runs(np.sort(np.concatenate([self.keys, keys]), kind="stable"))[0]
        old, new = np.searchsorted(merged, self.keys), np.searchsorted(merged, keys)
        for name, values in added.items():
            combine, empty = self.COMBINE[name]
            out = np.full(len(merged), empty, dtype=values.dtype)
            more = np.full(len(merged), empty, dtype=values.dtype)
            out[old], more[new] = getattr(self, name), values
            setattr(self, name, combine(out, more))
        self.keys = merged

    @property
    def labelled(self) -> bool:
        """Every row has a label."""
        return self.rows > 0 and self.unlabelled == 0

    @property
    def both_classes(self) -> bool:
        """Labels of both classes on every row: what classification performance needs."""
        return self.labelled and 0 < self.tp + self.fn < self.rows

    @property
    def only_label(self) -> int:
        """The one label of a batch with one class."""
        return int(self.tp + self.fn > 0)

    def _ranks(self) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Per bin: the share of negatives a positive there outranks, and of positives that
        outrank a negative there (ties count half): DeLong's placements."""
        pos, neg = self.positives, self.negatives
        m, n = int(pos.sum()), int(neg.sum())
        below = (np.cumsum(neg) - neg + 0.5 * neg) / n
        above = (m - np.cumsum(pos) + 0.5 * pos) / m
        return below, above, m, n

    def roc_auc(self) -> intervals.Estimate:
        if not self.both_classes:
            return intervals.Estimate(math.nan, math.nan, math.nan, self.rows)
        below, above, m, n = self._ranks()
        auc = float((self.positives * below).sum() / m)
        var = _variance_of_mean(self.positives, below, auc, m) + _variance_of_mean(
            self.negatives, above, auc, n
        )
        return intervals.roc_auc_estimate(auc, var, self.rows)

    def roc_auc_error(self) -> float:
        """The most ROC AUC can differ from its value on unbinned probabilities."""
        if not self.both_classes:
            return math.nan
        m, n = self.tp + self.fn, self.fp + self.tn
        if self.exact:
            return 0.0
        differ = self.lowest < self.highest  # equal probabilities are ties unbinned too
        return float((self.positives * self.negatives)[differ].sum() / (2 * m * n))

    def pr_auc(self) -> intervals.Estimate:
        """Average precision, a threshold at each occupied bin from the top."""
        if not self.both_classes:
            return intervals.Estimate(math.nan, math.nan, math.nan, self.rows)
        tp = np.cumsum(self.positives[::-1])
        fp = np.cumsum(self.negatives[::-1])
        recall = tp / tp[-1]
        precision = tp / (tp + fp)
        ap = float((np.diff(recall, prepend=0.0) * precision).sum())
        return intervals.pr_auc_estimate(ap, int(tp[-1]), self.rows)

    def brier(self) -> intervals.Estimate:
        n = self.rows - self.unlabelled
        mean = self.errors / n
        sd = math.sqrt(max(self.errors_squared - n * mean**2, 0.0) / (n - 1)) if n > 1 else math.nan
        return intervals.mean_estimate(mean, sd, n)

    def estimates(self) -> dict[str, intervals.Estimate]:
        """As `verdict.estimates` gives them from every row."""
        return {"roc_auc": self.roc_auc(), "pr_auc": self.pr_auc(), "brier": self.brier()}

    def metrics(self) -> dict[str, float]:
        """As `scores.classification_metrics` gives them from every row."""
        n, tp, fp, fn = self.rows, self.tp, self.fp, self.fn
        return {
            "roc_auc": self.roc_auc().value,
            "pr_auc": self.pr_auc().value,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
            "precision": tp / (tp + fp) if tp + fp else 0.0,
            "recall": tp / (tp + fn) if tp + fn else 0.0,
            "accuracy": (tp + self.tn) / n,
            "brier": self.errors / n,
            "log_loss": self.log_loss / n,
            "positive_rate": (tp + fn) / n,
            "predicted_positive_rate": (tp + fp) / n,
            "rows": n,
        }

    def calibration(self) -> dict:
        """As `verdict.calibration` gives it: mean prediction, observed rate, their gap, and per
        tenth of the predicted probability (cut at its deciles) the mean prediction, observed
        rate and rows."""
        counts = self.positives + self.negatives
        n = int(counts.sum())
        # each entry's probability: exact, or in bins the mean of the bin's
        values = self.keys if self.exact else self.proba_sums / counts
        last = np.cumsum(counts) - 1  # the position of each entry's last row, in order

        def at(position: np.ndarray) -> np.ndarray:
            return values[np.searchsorted(last, position)]

        h = (n - 1) * np.linspace(0, 1, RELIABILITY_BINS + 1)  # np.quantile's linear method
        below = np.floor(h).astype(np.int64)
        edges = np.unique(_lerp(at(below), at(np.minimum(below + 1, n - 1)), h - below))
        tenth = np.clip(np.searchsorted(edges, values, side="right") - 1, 0,
                        max(len(edges) - 2, 0))  # fmt: skip
        rows = np.bincount(tenth, weights=counts)
        sums = np.bincount(tenth, weights=self.proba_sums)
        hits = np.bincount(tenth, weights=self.positives)
        curve = [[float(sums[b] / rows[b]), float(hits[b] / rows[b]), int(rows[b])]
                 for b in range(len(rows)) if rows[b]]  # fmt: skip
        mean, rate = float(self.proba_sums.sum() / n), float(self.positives.sum() / n)
        return {"mean_proba": mean, "observed_rate": rate, "calibration_gap": rate - mean,
                "reliability": curve}  # fmt: skip


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """a + t (b - a), as numpy's quantiles compute it (from b's side past the middle)."""
    diff = b - a
    return np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)
