"""The monitor's rules: the gate file's `monitoring:` block (what fails a batch on drift, what
warns), with each judged metric's `max_regression` from its `metrics:` block."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..registry.gates import load_gates, read_rules

#: The metrics a labelled monitored batch is judged on, when the gate file has a rule for them.
JUDGED = ("roc_auc", "pr_auc", "brier")
#: The keys of the gate file's `monitoring:` block.
MONITORING_KEYS = ("drift_share", "calibration_shift", "unseen_share", "drift_fdr")


@dataclass(frozen=True)
class MonitorRules:
    """The gate file's `monitoring:` block, with each metric's `max_regression`."""

    drift_share: float = 0.5  # fail: drift in more than this share of the model's features
    #: warn: the gap between observed and predicted rates moved by more than this share of the
    #: held-out positive rate
    calibration_shift: float = 0.25
    #: warn: values training never saw in more than this share of a batch's rows of a column
    unseen_share: float = 0.01
    #: a batch's drift p-value tests are judged together at this false-discovery rate
    #: (Benjamini-Hochberg: of the columns it calls drifted, this share at most by chance)
    drift_fdr: float = 0.05
    max_regression: dict[str, float] = field(default_factory=dict)

    def block(self) -> dict[str, float]:
        """The gate file's `monitoring:` block that gives these rules."""
        return {k: getattr(self, k) for k in MONITORING_KEYS}

    @classmethod
    def from_file(cls, path: str | Path) -> MonitorRules:
        return cls.from_gates(read_rules(path), str(path))

    @classmethod
    def from_gates(cls, gates: dict, where: str = "gate file") -> MonitorRules:
        block = gates.get("monitoring") or {}
        unknown = set(block) - set(MONITORING_KEYS)
        if unknown:
            raise ConfigError(f"{where}: monitoring: unknown keys {sorted(unknown)} "
                              f"(known: {', '.join(MONITORING_KEYS)})")  # fmt: skip
        rules = cls(
            drift_share=float(block.get("drift_share", cls.drift_share)),
            calibration_shift=float(block.get("calibration_shift", cls.calibration_shift)),
            unseen_share=float(block.get("unseen_share", cls.unseen_share)),
            drift_fdr=float(block.get("drift_fdr", cls.drift_fdr)),
            max_regression={
                m: float(r["max_regression"])
                for m, r in gates["metrics"].items()
                if m in JUDGED and r and "max_regression" in r
            },  # fmt: skip
        )
        if not 0 < rules.drift_share < 1:
            raise ConfigError(f"{where}: monitoring.drift_share must be between 0 and 1, "
                              f"not {rules.drift_share}")  # fmt: skip
        if not 0 < rules.drift_fdr < 1:
            raise ConfigError(f"{where}: monitoring.drift_fdr must be between 0 and 1, "
                              f"not {rules.drift_fdr}")  # fmt: skip
        if rules.calibration_shift <= 0 or not 0 <= rules.unseen_share < 1:
            raise ConfigError(
                f"{where}: monitoring.calibration_shift must be positive and "
                "monitoring.unseen_share between 0 and 1"
            )
        return rules


def gate_file(path: str | Path, selection_metric: str | None) -> dict:
    """The whole gate file, checked: the promotion gates (`registry.gates`) and the monitor's
    rules. The evaluate task and `nbmlops-models promote` read it so, so a promotion never
    writes a baseline beside a gate file the next build refuses."""
    spec = load_gates(path, selection_metric)
    MonitorRules.from_gates(spec, str(path))
    return spec
