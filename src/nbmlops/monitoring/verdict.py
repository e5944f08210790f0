"""What a monitored batch's figures mean: fail, warn or pass, each with its reasons and numbers.

A batch **fails** only on what should change a decision: the served model's performance below
its held-out performance by more than the gate file allows (where the batch has labels, and
only when the batch's 95 % interval lies wholly beyond the line), or drift in more than the
allowed share of the model's features. Prediction drift, a moved calibration, unseen category
values and a shortfall within the interval are **warnings**.

PR AUC and Brier move with the share of positives even for a model that has not changed: a
model with the same ranking has a lower PR AUC when positives are rarer, and the Brier score
of any model shrinks with p(1 - p). Their lines are scaled to the batch's positive rate, so a
change of base rate alone is shown as calibration, not as a failing model: PR AUC by what the
held-out ranking would score at the batch's rate (its true and false positive rates kept,
`intervals.average_precision_at`), Brier by the ratio of p(1 - p). A scaled line stays within
the metric's range (0 to 1): a perfect batch never fails it. ROC AUC does not depend on the
base rate.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ..metrics import intervals
from ..metrics.tally import RELIABILITY_BINS
from ..spec import HIGHER_IS_BETTER
from . import estimate
from .rules import MonitorRules


@dataclass
class Verdict:
    status: str  # pass, warn or fail
    reasons: list[str]  # why it fails
    warnings: list[str]


def _quantile_bins(proba: np.ndarray, bins: int) -> tuple[np.ndarray, int]:
    """Each probability's bin among `bins` cut at its quantiles (fewer where they tie), and
    how many bins there are."""
    edges = np.unique(np.quantile(proba, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, proba, side="right") - 1, 0, max(len(edges) - 2, 0))
    return which, max(len(edges) - 1, 1)


def calibration(y, proba) -> dict:
    """Mean predicted probability, observed rate, their gap, and a reliability curve: per
    decile of the predicted probability, its mean prediction, the observed rate and the rows."""
    y, proba = np.asarray(y, dtype=float), np.asarray(proba, dtype=float)
    which, _ = _quantile_bins(proba, RELIABILITY_BINS)
    curve = [[float(proba[which == b].mean()), float(y[which == b].mean()), int((which == b).sum())]
             for b in np.unique(which)]  # fmt: skip
    mean, rate = float(proba.mean()), float(y.mean())
    return {"mean_proba": mean, "observed_rate": rate, "calibration_gap": rate - mean,
            "reliability": curve}  # fmt: skip


def estimates(y, proba) -> dict[str, intervals.Estimate]:
    return {name: estimate(y, proba) for name, estimate in intervals.ESTIMATORS.items()}


#: Score bins of the held-out ranking kept for PR AUC at another positive rate.
RANKING_BINS = 256


def ranking(y, proba) -> dict[str, list[int]]:
    """Positives and negatives per bin of the held-out probabilities (RANKING_BINS quantile
    bins, ascending): what PR AUC at another positive rate needs of the ranking."""
    y, proba = np.asarray(y, dtype=float), np.asarray(proba, dtype=float)
    which, bins = _quantile_bins(proba, RANKING_BINS)
    positives = np.bincount(which, weights=y, minlength=bins)
    negatives = np.bincount(which, minlength=bins) - positives
    return {"positives": positives.astype(int).tolist(),
            "negatives": negatives.astype(int).tolist()}  # fmt: skip


def _line(metric: str, held: dict, regression: float, rate: float) -> float:
    """The value a batch at positive rate `rate` must reach (or stay under, for Brier), within
    the metric's range."""
    value, held_rate = held["metrics"][metric], held["positive_rate"]
    if metric == "roc_auc":
        line = value - regression
    elif metric == "pr_auc":
        count = held["ranking"]["positives"], held["ranking"]["negatives"]
        at = intervals.average_precision_at
        line = (value - regression) * at(*count, rate) / at(*count, held_rate)
    else:
        line = (value + regression) * rate * (1 - rate) / (held_rate * (1 - held_rate))
    return min(max(line, 0.0), 1.0)


def _performance(found: dict[str, intervals.Estimate], held: dict, rate: float,
                 rules: MonitorRules) -> tuple[list[str], list[str]]:  # fmt: skip
    reasons, warnings = [], []
    held_rate = held["positive_rate"]
    for metric, regression in rules.max_regression.items():
        est, value = found.get(metric), held["metrics"].get(metric, math.nan)
        if est is None or math.isnan(est.value) or math.isnan(value):
            continue
        line = _line(metric, held, regression, rate)
        higher = metric in HIGHER_IS_BETTER
        sign, op = ("−", "<") if higher else ("+", ">")
        why = f"held-out {value:.3f} {sign} {regression:g}"
        if metric != "roc_auc":
            why += (f", scaled to this batch's positive rate {rate:.1%} from "
                    f"{held_rate:.1%}")  # fmt: skip
        beyond = est.value < line if higher else est.value > line
        sure = est.high < line if higher else est.low > line
        text = f"{metric} {est} {op} {line:.3f} ({why})"
        if sure:
            reasons.append(text)
        elif beyond:
            warnings.append(f"{text}; the line is inside the 95 % interval, so not a failure")
    return reasons, warnings


def judge(row: dict, rules: MonitorRules, held: dict | None, found: dict | None,
          unseen: dict[str, dict], expected: dict | None = None) -> Verdict:  # fmt: skip
    """The verdict of one batch from its drift figures (`row`), its labelled estimates
    (`found`, None without labels of both classes) and the served model's held-out figures
    (`held`: metrics, `positive_rate`, `calibration_gap`). Without labels, the performance
    `expected` from the served model's probabilities (`estimate`) warns when its whole
    interval lies beyond a line, at the positive rate the probabilities expect."""
    reasons, warnings = [], []
    share, features = row["drift_share"], row["features_compared"]
    if share > rules.drift_share:
        names = ", ".join(row["drifted_features"][:6])
        more = "…" if len(row["drifted_features"]) > 6 else ""
        reasons.append(f"data drift in {share:.0%} of the model's features "
                       f"({len(row['drifted_features'])} of {features}: {names}{more}) > "
                       f"{rules.drift_share:.0%}")  # fmt: skip
    if row["prediction_drift"]:
        warnings.append(f"prediction drift: the served model's scores moved (drift score "
                        f"{row['prediction_drift_score']:.3f})")  # fmt: skip
    if found is not None and held is not None:
        rate, held_rate = row["observed_rate"], held["positive_rate"]
        fails, warns = _performance(found, held, rate, rules)
        reasons += fails
        warnings += warns
        moved = row["calibration_gap"] - held["calibration_gap"]
        allowed = rules.calibration_shift * held_rate
        if abs(moved) > allowed:
            warnings.append(
                f"calibration moved: observed rate {rate:.1%} against {row['mean_proba']:.1%} "
                f"predicted (held-out {held_rate:.1%} against {held['mean_proba']:.1%}); "
                f"the gap moved {moved * 100:+.1f} points, more than {allowed * 100:.1f} "
                f"({rules.calibration_shift:g} × the held-out rate)"
            )
    if found is None and expected and held is not None:
        fails, _ = _performance(expected, held, row["expected_positive_rate"], rules)
        warnings += [f"estimated before labels: {text}" for text in fails]
    for col, found in unseen.items():
        share = found["rows"] / row["rows"]
        if share > rules.unseen_share:
            shown = ", ".join(f"{v!r} ({n} rows)" for v, n in list(found["values"].items())[:3])
            warnings.append(f"{col}: {share:.1%} of rows hold values unseen in training "
                            f"(more than {rules.unseen_share:.1%}): {shown}")  # fmt: skip
    status = "fail" if reasons else "warn" if warnings else "pass"
    return Verdict(status, reasons, warnings)


def held_out(y, proba) -> dict:
    """The served model's figures on the held-out window: what each batch is judged against."""
    found = estimates(y, proba)
    cal = calibration(y, proba)
    return {
        "metrics": {k: e.value for k, e in found.items()},
        "positive_rate": cal["observed_rate"],
        "mean_proba": cal["mean_proba"],
        "calibration_gap": cal["calibration_gap"],
        "reliability": cal["reliability"],
        "ranking": ranking(y, proba),
        "recalibration": estimate.recalibration(y, proba),
        "rows": int(len(np.asarray(y))),
    }


def real_batches(batches: list[dict]) -> list[dict]:
    """The batches of the data, without the control batches that check the monitor."""
    return [b for b in batches if not b["control"]]


def status_counts(batches: list[dict]) -> dict[str, int]:
    """How many batches fail, warn and pass."""
    return {s: sum(b["status"] == s for b in batches) for s in ("fail", "warn", "pass")}


#: What each control batch must get: the same rows pass, shifted rows fail.
CONTROL_EXPECTED = {"same": ("pass", "warn"), "shifted": ("fail",)}


def wrong_controls(batches: list[dict]) -> list[dict]:
    """Control batches whose status is not the one their construction guarantees."""
    return [b for b in batches if b["control"]
            and b["status"] not in CONTROL_EXPECTED.get(b["control"], (b["status"],))]  # fmt: skip


def finding(reason: str) -> str:
    """A reason's kind: its words before the first figure or colon ("prediction drift",
    "calibration moved", "brier")."""
    head = re.split(r"[:\d(]", reason, maxsplit=1)[0].strip()
    return re.sub(r"\s+(in|of|by|than)$", "", head) or reason


_VERB = {"pass": "passes", "warn": "warns", "fail": "fails"}


@dataclass
class Summary:
    """The monitoring of a build in one line: the newest batch's status (what `make
    monitor-latest` gates on), fail when a control batch got the wrong one; "" without
    batches."""

    status: str
    text: str  # "newest batch 2013-12 warns (prediction drift); 8 batches: 1 fail, 6 warn, 1 pass"
    counts: dict[str, int]


def summary(batches: list[dict]) -> Summary:
    """`batches` (a tests.json's) in one line, the newest batch's first reason named."""
    real = real_batches(batches)
    if not real:
        return Summary("", "no batches to monitor", {})
    counts, newest = status_counts(real), real[-1]
    why = (newest["reasons"] or newest["warnings"] or [""])[0]
    text = f"newest batch {newest['batch']} {_VERB.get(newest['status'], newest['status'])}"
    text += f" ({finding(why)})" if why else ""
    text += f"; {len(real)} batches: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    status = newest["status"]
    if wrong := wrong_controls(batches):
        status = "fail"
        text += "; " + ", ".join(f"control {b['batch']} {_VERB.get(b['status'], b['status'])}"
                                 for b in wrong)  # fmt: skip
    return Summary(status, text, counts)
