"""A batch's performance estimated before its labels arrive, from the served model's
probabilities (confidence-based performance estimation).

The probabilities are first calibrated again on the held-out window (`recalibration`: an
isotonic fit of its labels on its probabilities, the window whose labels are known and which
the model never trained on). The model's own calibration was fit inside the training window,
and a model is often surer out of time than in it: on the flights sample, estimates from the
served probabilities put ROC AUC 0.02 to 0.07 too high, and the realized figure fell inside
the interval in 2 of 8 months. Where the probabilities are calibrated, a row scored p is
positive with probability p: a batch's labels are then a draw of one Bernoulli(p) per row,
and the served scores' ROC AUC, PR AUC and Brier score have a distribution that the
probabilities alone determine: the estimate is its expected value (the
expected number of positives at each score, put into the metric's formula), the interval its
2.5th to 97.5th percentiles over ROUNDS draws. Once the labels come, the realized figure lies
inside the interval in about 95 % of batches if calibration held; how often it does over a
build's labelled batches is its `coverage`. A concept drift (the same rows, other labels)
breaks calibration, and no estimate made without labels can see it.

The `nannyml` package implements the same estimator (CBPE); it was not taken because it pins
its own ranges of pandas and scikit-learn beside evidently's, and the estimator is these few
lines on the counts the monitor already has.
"""

from __future__ import annotations

import numpy as np

from ..metrics import intervals

#: Draws of a batch's labels for the interval.
ROUNDS = 200
#: Scores × draws held at once.
CELLS = 2_000_000
#: The metrics estimated, as the monitor names them.
ESTIMATED = ("roc_auc", "pr_auc", "brier")


def _figures(values: np.ndarray, rows: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """ROC AUC, PR AUC and Brier of rows at ascending scores `values`, `rows[k]` of them at
    score k and `positives[k]` of those positive (per column of `positives`, one draw each)."""
    negatives = rows[:, None] - positives
    m, n = positives.sum(axis=0), negatives.sum(axis=0)
    tp, fp = np.cumsum(positives[::-1], axis=0), np.cumsum(negatives[::-1], axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):  # one class: NaN, as without labels
        below = (np.cumsum(negatives, axis=0) - 0.5 * negatives) / n  # ties count half
        auc = (positives * below).sum(axis=0) / m
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall_steps = np.diff(tp, axis=0, prepend=0.0) / m
    ap = (recall_steps * precision).sum(axis=0)
    v = values[:, None]
    brier = (positives * (1 - v) ** 2 + negatives * v**2).sum(axis=0) / rows.sum()
    return np.vstack([auc, ap, brier])


def estimate(proba, fit: dict[str, list[float]] | None = None, rounds: int = ROUNDS,
             seed: int = 0) -> dict[str, intervals.Estimate]:  # fmt: skip
    """The expected ROC AUC, PR AUC and Brier of the served scores `proba`, each with the
    interval its labels would give 95 % of the time: a row is positive with its score's
    probability after `fit` (a `recalibration`; the score itself without one). The figures
    are the served scores' (their ranking, their Brier), as the labels will measure them."""
    values, rows = np.unique(np.asarray(proba, dtype=float), return_counts=True)
    chance = recalibrated(values, fit)
    rows = rows.astype(float)
    expected = _figures(values, rows, (rows * chance)[:, None])[:, 0]
    rng, figures = np.random.default_rng(seed), []
    step = max(1, CELLS // len(rows))  # draws at a time: memory bounded by CELLS per array
    for start in range(0, rounds, step):
        size = (len(rows), min(step, rounds - start))
        drawn = rng.binomial(rows.astype(np.int64)[:, None], chance[:, None], size)
        counts = drawn.sum(axis=0)
        both = (counts > 0) & (counts < rows.sum())  # ROC AUC needs both classes
        figures.append(_figures(values, rows, drawn[:, both].astype(float)))
    drawn_figures = np.hstack(figures)
    low, high = (
        np.percentile(drawn_figures, [2.5, 97.5], axis=1)
        if drawn_figures.shape[1]
        else np.full((2, len(ESTIMATED)), np.nan)
    )  # no draw held both classes
    n = int(rows.sum())
    return {name: intervals.Estimate(float(expected[i]), float(low[i]), float(high[i]), n)
            for i, name in enumerate(ESTIMATED)}  # fmt: skip


def recalibration(y, proba) -> dict[str, list[float]]:
    """The isotonic fit of labels `y` on probabilities `proba` (the held-out window's), as the
    points between which it is linear: `recalibrated` applies it."""
    from sklearn.isotonic import IsotonicRegression

    fit = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
    fit.fit(np.asarray(proba, dtype=float), np.asarray(y, dtype=float))
    return {"x": fit.X_thresholds_.tolist(), "y": fit.y_thresholds_.tolist()}


def recalibrated(proba, fit: dict[str, list[float]] | None) -> np.ndarray:
    """`proba` through a `recalibration` (as it is, without one)."""
    proba = np.asarray(proba, dtype=float)
    return np.interp(proba, fit["x"], fit["y"]) if fit else proba


def coverage(batches: list[dict]) -> dict[str, dict]:
    """Over the batches with both an estimate and a realized figure: per metric, how many,
    the share whose realized figure lies inside the estimate's interval, and the mean
    absolute error of the estimate."""
    found = {}
    for metric in ESTIMATED:
        pairs = [(b["estimated"][metric], b[metric]) for b in batches
                 if b.get("estimated") and b.get(metric) is not None
                 and np.isfinite(b[metric])]  # fmt: skip
        if pairs:
            inside = [low <= real <= high for (_, low, high), real in pairs]
            errors = [abs(value - real) for (value, _, _), real in pairs]
            found[metric] = {"batches": len(pairs), "inside": float(np.mean(inside)),
                             "mean_absolute_error": float(np.mean(errors))}  # fmt: skip
    return found
