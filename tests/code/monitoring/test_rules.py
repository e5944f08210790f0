"""The monitor's rules: the gate file's monitoring block, checked where the monitor reads it and
by the evaluate task before anything registers; the promotion commands do not need it."""

import pytest

from nbmlops.errors import ConfigError
from nbmlops.monitoring import rules
from nbmlops.monitoring.rules import MonitorRules
from nbmlops.registry import gates


def test_monitoring_rules_come_from_the_gate_file_and_are_checked(tmp_path):
    rules = MonitorRules.from_file("model/gates.yaml")
    assert rules.drift_share == 0.5 and set(rules.max_regression) == {"roc_auc", "pr_auc", "brier"}
    bad = tmp_path / "gates.yaml"
    base = "metrics:\n  roc_auc: {floor: 0.5, max_regression: 0.02}\n"
    bad.write_text(base + "monitoring: {drift_shar: 0.3}\n")
    with pytest.raises(
        ConfigError, match="gates.yaml: monitoring: unknown keys \\['drift_shar'\\]"
    ):
        MonitorRules.from_file(bad)
    bad.write_text(base + "monitoring: {drift_share: 50}\n")
    with pytest.raises(ConfigError, match="drift_share must be between 0 and 1"):
        MonitorRules.from_file(bad)
    bad.write_text(base)  # no monitoring block: the defaults
    assert MonitorRules.from_file(bad).drift_share == 0.5


def test_the_evaluate_task_refuses_a_bad_monitoring_block_the_promotion_gates_ignore(tmp_path):
    path = tmp_path / "gates.yaml"
    path.write_text("metrics:\n  roc_auc: {floor: 0.5, min_improvement: 0.002}\n"
                    "monitoring: {drift_share: 2}\n")  # fmt: skip
    assert gates.load_gates(path, "roc_auc")["monitoring"] == {"drift_share": 2}
    with pytest.raises(ConfigError, match=r"gates.yaml: monitoring.drift_share must be between"):
        rules.gate_file(path, "roc_auc")
    path.write_text("metrics:\n  roc_auc: {floor: 0.5}\nmonitoring: [drift_share]\n")
    with pytest.raises(ConfigError, match="gates.yaml: `monitoring:` must be a mapping"):
        gates.load_gates(path, "roc_auc")
