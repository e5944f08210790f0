import math

import pytest
import yaml

from nbmlops.errors import ConfigError
from nbmlops.registry import gates

SPEC = {
    "selection_metric": "roc_auc",
    "metrics": {
        "roc_auc": {"floor": 0.6, "max_regression": 0.02, "min_improvement": 0.005},
        "brier": {"ceiling": 0.25, "max_regression": 0.01},
    },
}
BASE = {"metrics": {"roc_auc": 0.70, "brier": 0.20}}


def _status(result):
    return dict(zip(result.table["metric"], result.table["status"], strict=True))


def test_first_model_needs_only_the_floors():
    result = gates.check({"roc_auc": 0.65, "brier": 0.2}, None, SPEC)
    assert result.passed and result.promotable
    assert result.table.loc[0, "allowed"] == "[0.6000, inf]"


def test_small_regression_passes_but_is_not_promotable():
    result = gates.check({"roc_auc": 0.69, "brier": 0.205}, BASE, SPEC)
    assert result.passed and not result.promotable
    assert result.table.loc[0, "delta"] == pytest.approx(-0.01)


def test_improvement_is_promotable():
    assert gates.check({"roc_auc": 0.706, "brier": 0.2}, BASE, SPEC).promotable


def test_regression_beyond_range_fails_with_table():
    result = gates.check({"roc_auc": 0.67, "brier": 0.215}, BASE, SPEC)
    assert not result.passed and _status(result) == {"roc_auc": "FAIL", "brier": "FAIL"}
    with pytest.raises(gates.GateError) as err:
        result.raise_if_failed()
    text = str(err.value)
    assert "roc_auc" in text and "[0.6800, inf]" in text and "[-inf, 0.2100]" in text


def test_floor_beats_baseline_and_missing_metric_fails():
    result = gates.check({"roc_auc": 0.59, "brier": 0.2}, None, SPEC)
    assert _status(result)["roc_auc"] == "FAIL"
    assert not gates.check({"brier": 0.2}, None, SPEC).passed
    assert math.isnan(gates.check({"brier": 0.2}, None, SPEC).table.loc[0, "challenger"])


def test_gate_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="gate file not found"):
        gates.load_gates(tmp_path / "none.yaml", "roc_auc")
    path = tmp_path / "g.yaml"
    path.write_text("metrics:\n  roc_auc: {flor: 0.5}\n")
    with pytest.raises(ConfigError, match=r"unknown keys \['flor'\]"):
        gates.load_gates(path, "roc_auc")
    path.write_text("metrics:\n  roc_auc: {floor: 0.5}\n")
    with pytest.raises(ConfigError, match="selection_metric 'f1' has no rule here; add one"):
        gates.load_gates(path, "f1")
    with pytest.raises(ConfigError, match="selection_metric 'auc' is not a metric"):
        gates.load_gates(path, "auc")
    # a gate file of an older project: the key's new home, with its value
    path.write_text("primary_metric: pr_auc\nmetrics:\n  roc_auc: {floor: 0.5}\n")
    with pytest.raises(ConfigError, match="moved to the env file as `selection_metric: pr_auc`"):
        gates.load_gates(path, "roc_auc")
    with pytest.raises(ConfigError, match="no `selection_metric`"):
        gates.of_env({"gates": str(path)})


def test_committed_gate_file_loads():
    from tests.conftest import PROJECT

    for env in ("env.yaml", "env.ci.yaml"):
        metric = yaml.safe_load((PROJECT / env).read_text())["selection_metric"]
        spec = gates.load_gates(PROJECT / "model" / "gates.yaml", metric)
        assert spec["selection_metric"] == metric and metric in spec["metrics"]


def test_pr_auc_floor_as_a_lift_follows_the_positive_rate_of_the_rows_judged(tmp_path):
    spec = {"selection_metric": "roc_auc",
            "metrics": {"roc_auc": {"floor": 0.5}, "pr_auc": {"min_lift": 1.2}}}  # fmt: skip
    # the same PR AUC is well above guessing at a 13 % rate and below it at 32 %
    rare = gates.check({"roc_auc": 0.65, "pr_auc": 0.30, "positive_rate": 0.13}, None, spec)
    common = gates.check({"roc_auc": 0.65, "pr_auc": 0.30, "positive_rate": 0.32}, None, spec)
    assert rare.passed and not common.passed
    assert common.table.loc[1, "allowed"] == "[0.3840, inf]"
    assert not gates.check({"roc_auc": 0.65, "pr_auc": 0.30}, None, spec).passed  # no rate
    bad = tmp_path / "gates.yaml"
    bad.write_text("metrics:\n  roc_auc: {min_lift: 1.1}\n")
    with pytest.raises(ConfigError, match="min_lift is a rule of pr_auc alone"):
        gates.load_gates(bad, "roc_auc")


def test_one_promotion_rule_for_promote_propose_and_the_backtest():
    """The held-out gate alone without evidence; with evidence on rows both models scored,
    the held-out gate must pass, no evidence be worse, and some win."""
    from nbmlops.metrics.intervals import PairedDifference
    from nbmlops.registry.evidence import Evidence, no_evidence
    from nbmlops.registry.promotion import decide

    def gate(passed, promotable):
        return gates.GateResult(None, passed, promotable)

    def shown(passed, promotable, high=0.02):
        return Evidence("shadow", ["2024-05"], 500, gate(passed, promotable),
                        PairedDifference(0.7, 0.71, 0.01, 0.0, high, 0.1, 500))  # fmt: skip

    assert decide(gate(True, True), []).allowed
    assert "min_improvement" in decide(gate(True, False), []).why
    assert decide(gate(True, True), [no_evidence("none yet")]).allowed  # unjudged: none
    assert not decide(gate(True, True), [no_evidence("none")], needs_evidence=True).allowed
    assert decide(gate(True, False), [shown(True, True)]).allowed  # held out: passing will do
    refused = {
        "it fails the held-out gate": decide(gate(False, False), [shown(True, True)]),
        "the evidence shows it worse than the champion": decide(
            gate(True, True), [shown(True, True), shown(True, True, high=-0.01)]
        ),
        "on the rows both models scored": decide(gate(True, True), [shown(True, False)]),
    }
    for why, decision in refused.items():
        assert not decision.allowed and why in decision.why
