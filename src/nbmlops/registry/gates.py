"""Promotion gates: metric ranges against the committed baseline of the champion.

The gate file names, per metric, an absolute `floor` (or `ceiling` for losses), the largest
allowed regression against the baseline, and the smallest improvement that justifies
promotion (on the env's `selection_metric`). PR AUC's floor may instead be a `min_lift` over
the positive rate of the rows judged: a model that guesses has a PR AUC equal to that rate,
so a fixed floor set in a month of many positives blocks every model in a month of few. The baseline
file holds the champion's metrics; it changes only through `nbmlops-models promote` /
`rollback`, so every change lands as a reviewed diff.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..errors import ConfigError, PipelineError
from ..settings import check_selection_metric
from ..spec import HIGHER_IS_BETTER
from ..storage import read_json

GATE_KEYS = {"floor", "ceiling", "max_regression", "min_improvement", "min_lift"}


class GateError(PipelineError):
    """The challenger breaks a gate; the message carries the whole gate table."""


def read_rules(path: str | Path) -> dict:
    """The gate file's rules, checked: its `metrics`; the `monitoring` block is the monitor's
    rules, which `monitoring.rules` checks (the evaluate task does, before anything registers)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: gate file not found (set `gates` in the env file)")
    spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    metrics = spec.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise ConfigError(f"{path}: a gate file needs a `metrics:` mapping")
    for name, rule in metrics.items():
        unknown = set(rule or {}) - GATE_KEYS
        if unknown:
            raise ConfigError(f"{path}: metric {name!r}: unknown keys {sorted(unknown)}")
        if "min_lift" in (rule or {}) and name != "pr_auc":
            raise ConfigError(f"{path}: metric {name!r}: min_lift is a rule of pr_auc alone "
                              "(its floor as a multiple of the positive rate)")  # fmt: skip
    if "primary_metric" in spec:
        moved = f"`selection_metric: {spec['primary_metric']}`"
        raise ConfigError(f"{path}: primary_metric has moved to the env file as {moved}; "
                          "delete it here")  # fmt: skip
    unknown = set(spec) - {"metrics", "monitoring"}
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)} "
                          "(known: metrics, monitoring)")  # fmt: skip
    if not isinstance(spec.get("monitoring") or {}, dict):
        raise ConfigError(f"{path}: `monitoring:` must be a mapping of the monitor's rules")
    return spec


def load_gates(path: str | Path, selection_metric: str | None) -> dict:
    """The gate file's rules, with the env's `selection_metric` (the metric that picks the
    best candidate, and that promotion asks a `min_improvement` of) as `selection_metric`."""
    if selection_metric is None:
        raise ConfigError("env file: no `selection_metric`: name the metric that picks the best "
                          "candidate, e.g. `selection_metric: roc_auc` (it was `primary_metric` "
                          "in the gate file)")  # fmt: skip
    spec = read_rules(path)
    check_selection_metric(selection_metric)
    if selection_metric not in spec["metrics"]:
        raise ConfigError(f"{path}: the env's selection_metric {selection_metric!r} has no rule "
                          f"here; add one under metrics (e.g. `{selection_metric}: "
                          "{min_improvement: 0.002}`)")  # fmt: skip
    spec["selection_metric"] = selection_metric
    return spec


def of_env(env: dict) -> dict:
    """The gates an env file names (`gates`), picked by its `selection_metric`."""
    return load_gates(env["gates"], env.get("selection_metric"))


def load_baseline(path: str | Path) -> dict | None:
    """The committed champion metrics, or None before the first promotion."""
    path = Path(path)
    return read_json(path) if path.is_file() else None


@dataclass
class GateResult:
    table: pd.DataFrame  # metric, baseline, challenger, allowed, status
    passed: bool
    promotable: bool

    def __str__(self) -> str:
        return self.table.to_string(index=False)

    def raise_if_failed(self, what: str = "challenger") -> None:
        if not self.passed:
            raise GateError(f"the {what} fails the promotion gates:\n{self}")


def check(challenger: dict[str, float], baseline: dict | None, gates: dict) -> GateResult:
    """Compare the challenger's metrics with the baseline under the gate rules."""
    base = (baseline or {}).get("metrics", {})
    rows, passed, improved = [], True, baseline is None
    for metric, rule in gates["metrics"].items():
        rule = rule or {}
        value = challenger.get(metric, math.nan)
        higher = metric in HIGHER_IS_BETTER
        sign = 1 if higher else -1
        low, high = rule.get("floor", -math.inf), rule.get("ceiling", math.inf)
        if "min_lift" in rule:  # judged rows without a positive rate pass no floor
            rate = challenger.get("positive_rate")
            low = math.inf if rate is None else max(low, rule["min_lift"] * rate)
        ref = base.get(metric)
        if ref is not None and "max_regression" in rule:
            if higher:
                low = max(low, ref - rule["max_regression"])
            else:
                high = min(high, ref + rule["max_regression"])
        ok = not math.isnan(value) and low <= value <= high
        passed &= ok
        if ref is not None and metric == gates["selection_metric"]:
            improved = sign * (value - ref) >= rule.get("min_improvement", 0.0)
        rows.append(
            {
                "metric": metric,
                "baseline": ref,
                "challenger": value,
                "delta": None if ref is None else value - ref,
                "allowed": f"[{_num(low)}, {_num(high)}]",
                "status": "pass" if ok else "FAIL",
            }
        )
    return GateResult(pd.DataFrame(rows), passed, passed and improved)


def _num(x: float) -> str:
    return "-inf" if x == -math.inf else "inf" if x == math.inf else f"{x:.4f}"


def trivial_gates(y_train, y_holdout, monitoring: dict) -> tuple[dict, dict[str, float]]:
    """Gates for a new dataset, measured on its own windows, and the metrics they came from.

    The trivial model predicts the training window's positive rate for every row. A candidate
    must rank no worse on the held-out window: ROC AUC at least 0.5, PR AUC at least the
    positive rate of the rows it is judged on (`min_lift` 1). The candidates weight both classes
    equally, so their probabilities are not the positive rate's scale: their Brier ceiling is
    that of saying 0.5 for every row (0.25), not the trivial model's. The allowed PR AUC
    regression scales with the positive rate, so a rare class is not judged by a common
    class's numbers. `monitoring` is the gate file's block of the monitor's rules.
    """
    from ..metrics.scores import classification_metrics

    y_train, y_holdout = np.asarray(y_train), np.asarray(y_holdout)
    trivial = classification_metrics(y_holdout, np.full(len(y_holdout), y_train.mean()))
    rate = float(y_holdout.mean())
    gates = {
        "metrics": {
            "roc_auc": {"floor": 0.5, "max_regression": 0.02, "min_improvement": 0.002},
            "pr_auc": {"min_lift": 1.0, "max_regression": round(max(0.005, 0.15 * rate), 3)},
            "brier": {"ceiling": 0.25, "max_regression": 0.02},
        },
        "monitoring": monitoring,
    }  # fmt: skip
    return gates, {k: trivial[k] for k in ("roc_auc", "pr_auc", "brier", "positive_rate")}
