"""Calibrated probabilities and the decision threshold that goes with them.

A candidate's estimator is fitted on the older part of its training window; on the newest part
(`CalibrationSettings.share`, in time order) a one-dimensional map from its probability to the
observed rate is fitted, and the decision threshold is chosen by the declared rule. The fitted
pipeline's last step becomes `Calibrated(estimator)`: the same ranking (sigmoid) or a monotone
step (isotonic), probabilities that match the rate the model predicts, and `threshold_`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

from .errors import ConfigError
from .settings import CalibrationSettings
from .spec import THRESHOLD

#: Probabilities are clipped this far from 0 and 1 before their log-odds are taken.
EPSILON = 1e-6
#: The smallest slope of a sigmoid map: a map never reverses the estimator's order.
MIN_SLOPE = 1e-3


class Calibrated(ClassifierMixin, BaseEstimator):
    """A fitted estimator whose positive-class probability goes through a fitted map.

    `map_` is `{"kind": "sigmoid", "slope": a, "intercept": b}` (on the log-odds) or
    `{"kind": "isotonic", "x": [...], "y": [...]}` (linear between the points, clipped) or
    `{"kind": "none"}`; `threshold_` is the decision threshold chosen with it.
    """

    def __init__(self, estimator=None):
        self.estimator = estimator

    def fit(self, X, y):
        """Not refitted in place: `calibrate` fits the estimator and the map on their own rows."""
        raise TypeError("a Calibrated model is made by nbmlops.calibration.calibrate, which "
                        "fits the estimator and its map on separate rows")  # fmt: skip

    def predict_proba(self, X) -> np.ndarray:
        p = self.calibrate(self.estimator.predict_proba(X)[:, 1])
        return np.column_stack([1 - p, p])

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= self.threshold_).astype(int)

    def calibrate(self, p: np.ndarray) -> np.ndarray:
        """The map applied to the estimator's positive-class probabilities."""
        return apply_map(self.map_, p)


def apply_map(found: dict, p: np.ndarray) -> np.ndarray:
    """A calibration map (`Calibrated.map_`) applied to probabilities."""
    p = np.asarray(p, dtype=np.float64)
    if found["kind"] == "sigmoid":
        z = _logit(p)
        return 1 / (1 + np.exp(-(found["slope"] * z + found["intercept"])))
    if found["kind"] == "isotonic":
        return np.interp(p, found["x"], found["y"])
    return p


def _logit(p: np.ndarray) -> np.ndarray:
    """Log-odds of probabilities clipped EPSILON away from 0 and 1."""
    p = np.clip(p, EPSILON, 1 - EPSILON)
    return np.log(p / (1 - p))


def fit_map(method: str, p: np.ndarray, y: np.ndarray) -> dict:
    """The map from probabilities `p` to outcomes `y` that `method` fits."""
    if method == "sigmoid":
        from sklearn.linear_model import LogisticRegression

        z = _logit(p)
        fitted = LogisticRegression(C=1e6, max_iter=1000).fit(z.reshape(-1, 1), y)
        slope = float(fitted.coef_[0, 0])
        return {"kind": "sigmoid", "slope": max(slope, MIN_SLOPE),
                "intercept": float(fitted.intercept_[0]), "fitted_slope": slope}  # fmt: skip
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        fitted = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(p, y)
        return {"kind": "isotonic", "x": fitted.X_thresholds_.tolist(),
                "y": fitted.y_thresholds_.tolist()}  # fmt: skip
    return {"kind": "none"}


def choose_threshold(rule, p: np.ndarray, y: np.ndarray) -> tuple[float, str]:
    """The decision threshold the rule picks on probabilities `p` with outcomes `y`, and a
    note when the rule's target cannot be met (then the closest threshold is taken)."""
    if isinstance(rule, int | float) and not isinstance(rule, bool):
        return float(rule), ""
    order = np.argsort(-p, kind="stable")
    p_sorted, y_sorted = p[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(p_sorted) != 0), len(p) - 1]  # one cut per value
    tp = np.cumsum(y_sorted)[last]
    flagged = last + 1
    precision = tp / flagged
    recall = tp / max(int(y.sum()), 1)
    cuts = p_sorted[last]
    if rule == "best_f1":
        total = precision + recall
        f1 = 2 * precision * recall / np.where(total > 0, total, 1)
        return float(cuts[int(np.argmax(f1))]), ""
    name, target = rule
    mine, other = (precision, recall) if name == "precision" else (recall, precision)
    meets = mine >= target
    if not meets.any():
        best = int(np.argmax(mine))
        note = (f"no threshold reaches {name} {target} on the calibration slice (best "
                f"{mine[best]:.3f}); took the one closest")  # fmt: skip
        return float(cuts[best]), note
    index = np.flatnonzero(meets)[int(np.argmax(other[meets]))]
    return float(cuts[index]), ""


def held_back(
    data: pd.DataFrame, settings: CalibrationSettings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training rows in two: the older to fit on, the newest `share` to calibrate on
    (rows are in time order, or in file order where there is no time column)."""
    cut = len(data) - int(round(len(data) * settings.share))
    return data.iloc[:cut], data.iloc[cut:]


def calibrate(pipeline, older: pd.DataFrame, newest: pd.DataFrame, columns: list[str],
              target: str, settings: CalibrationSettings, where: str = "") -> dict:  # fmt: skip
    """Fit `pipeline` on `older`, then its map and threshold on `newest`; the pipeline's last
    step becomes `Calibrated`. Returns what was found (method, rows, threshold, the Brier
    score and the calibration gap on `newest` before and after the map)."""
    y = newest[target].to_numpy()
    if len(np.unique(older[target])) < 2 or len(np.unique(y)) < 2:
        raise ConfigError(f"{where}calibration: the newest {settings.share:g} of the training "
                          f"window ({len(newest)} rows) or the rest has one class only; set "
                          "calibration.share (or method none, threshold a number)")  # fmt: skip
    pipeline.fit(older[columns], older[target])
    raw = pipeline.predict_proba(newest[columns])[:, 1]
    found = fit_map(settings.method, raw, y)
    p = apply_map(found, raw)
    threshold, note = choose_threshold(settings.threshold, p, y)
    model = Calibrated(pipeline.steps[-1][1])
    model.map_, model.threshold_, model.classes_ = found, threshold, np.array([0, 1])
    pipeline.steps[-1] = (pipeline.steps[-1][0], model)
    rule = settings.threshold
    return {
        "method": settings.method, "rows": int(len(newest)), "fitted_on_rows": int(len(older)),
        "threshold": threshold,
        "threshold_rule": rule if not isinstance(rule, tuple) else {rule[0]: rule[1]},
        "note": note, "positive_rate": float(y.mean()),
        "mean_before": float(raw.mean()), "mean_after": float(p.mean()),
        "brier_before": float(np.mean((raw - y) ** 2)), "brier_after": float(np.mean((p - y) ** 2)),
        "map": {k: v for k, v in found.items() if k not in ("x", "y")},
    }  # fmt: skip


def threshold_of(model) -> float:
    """The decision threshold a fitted pipeline was given, or the template's default."""
    last = model.steps[-1][1] if hasattr(model, "steps") else model
    return float(getattr(last, "threshold_", THRESHOLD))
