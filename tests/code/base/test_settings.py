import re

import pytest
import yaml

from nbmlops.errors import ConfigError
from nbmlops.settings import DataSettings


def test_defaults_and_types():
    s = DataSettings.from_params({"target": "y", "drop_columns": ["id"]})
    assert s.drop_columns == ("id",) and s.sample_frac == 1.0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"target": "y", "sample_fraction": 0.1}, "unknown key(s) ['data.sample_fraction']"),
        ({"target": "y", "sample_frac": 0}, "sample_frac"),
        ({"target": "y", "sample_frac": 1.5}, "sample_frac"),
        ({"target": "y", "reference_periods": 1, "holdout_periods": 1}, "reference_periods"),
        ({"target": ""}, "target"),
        ({"target": "y", "reference_periods": 12}, "set row_periods to at least 13"),
    ],
)
def test_bad_parameters_are_named(params, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        DataSettings.from_params(params)


def test_env_file_typo_is_named_with_the_keys_the_pipeline_uses(tmp_path, monkeypatch):
    import shutil

    from nbmlops.envfile import check_env_keys
    from tests.conftest import PROJECT

    shutil.copy(PROJECT / "pipeline.yaml", tmp_path / "pipeline.yaml")
    text = (PROJECT / "env.ci.yaml").read_text()
    (tmp_path / "env.ci.yaml").write_text(text)
    monkeypatch.setenv("PLOOMBER_ENV_FILENAME", "env.ci.yaml")
    shipped = yaml.safe_load(text)
    check_env_keys(here=str(tmp_path), serving=shipped["serving"], backtest=shipped["backtest"],
                   retraining=shipped["retraining"])  # fmt: skip
    typo = (
        text.replace("monitor_last: 0", "monitor_last: 0\nmonitor_lats: 1")
        .replace("  model_name: flight-delay-ci", "  model_name: flight-delay-ci\n  modelname: x")
        .replace("  poll_seconds: 1.0", "  poll_seconds: 1.0\n  latency_budget: 20")
    )
    (tmp_path / "env.ci.yaml").write_text(typo)
    with pytest.raises(ConfigError) as caught:
        check_env_keys(here=str(tmp_path))
    message = str(caught.value)
    assert "env.ci.yaml: unknown key 'monitor_lats'" in message
    assert "unknown key 'mlflow.modelname'" in message and "monitor_last" in message
    assert "unknown key 'serving.latency_budget'" in message and "latency_budget_ms" in message


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"latency_budget_ms": 20, "fallback_reserve_ms": 20}, "below serving.latency_budget_ms"),
        ({"rotate_rows": 0}, "must be positive"),
        ({"budget": 5}, "unknown key(s) ['serving.budget']"),
    ],
)
def test_serving_settings_refuse_bad_values(params, words):
    from nbmlops.settings import ServingSettings

    with pytest.raises(ConfigError, match=re.escape(words)):
        ServingSettings.from_params({"archive": "a"} | params, "env.yaml")
    assert ServingSettings.from_params({"archive": "a", "shadows": None}, "env.yaml").shadows == ()


def test_a_time_split_is_not_held_to_row_periods():
    s = DataSettings.from_params({"target": "y", "time_column": "t", "reference_periods": 15})
    assert s.reference_periods == 15 and s.row_periods == 12


def test_missing_value_words_survive_ploomber_reading_the_env_file():
    """Ploomber casts `null`, `NULL` and `None` to one None; each still counts as missing."""
    from ploomber.env.expand import cast_if_possible

    from nbmlops.settings import MISSING_VALUES

    as_ploomber_gives = [cast_if_possible(v) for v in MISSING_VALUES]
    assert as_ploomber_gives.count(None) == 3  # what broke the build
    s = DataSettings.from_params({"target": "y", "missing_values": as_ploomber_gives})
    assert set(s.missing_values) == set(MISSING_VALUES)
    only = DataSettings.from_params({"target": "y", "missing_values": ["n/a", None]})
    assert only.missing_values == ("n/a", "null", "NULL", "None")


def test_retraining_policies_are_read_as_written_and_refused_with_the_key_named():
    from nbmlops.settings import RetrainPolicy, backtest_label_delay, backtest_policies

    policies = backtest_policies(
        {"never": {"every": 0}, "rolling": {"window": 3, "every": 2, "trigger": False},
         "watch": {"trigger": "warn", "shadow_periods": 0}}
    )  # fmt: skip
    assert policies["never"] == RetrainPolicy()
    assert policies["never"].describe() == "never retrained"
    assert policies["rolling"].trigger == "never"  # YAML's `off` or `no`
    assert policies["rolling"].describe() == (
        "retrained every 2 periods on the latest 3 periods; 1 period in shadow"
    )
    assert policies["watch"].describe() == (
        "retrained when monitoring warns on every earlier period; promoted on the held-out gate"
    )
    bad = [
        ({"p": {"window": 0}}, "backtest.p: window must be 'expanding' or a number"),
        ({"p": {"window": "rolling"}}, "not 'rolling'"),
        ({"p": {"every": -1}}, "every must be a whole number"),
        ({"p": {"trigger": "drift"}}, "trigger must be one of never, fail, warn"),
        ({"p": {"evry": 1}}, "unknown key(s)"),
        ({}, "`backtest` must map policy names"),
        (["never", "on-fail"], "`backtest` must map policy names"),
        ({"label_delay": 1}, "`backtest` must map policy names"),  # a delay, and no policy
        ({"p": {}, "label_delay": -1}, "backtest.label_delay must be a whole number of periods"),
        ({"p": {}, "label_delay": "2"}, "not '2'"),
        ({"p": {}, "label_delay": True}, "not True"),
    ]
    for params, message in bad:
        with pytest.raises(ConfigError, match=re.escape(message)):
            backtest_policies(params, "env.yaml")
    with_delay = {"never": {}, "label_delay": 2}
    assert list(backtest_policies(with_delay)) == ["never"]
    assert backtest_label_delay(with_delay) == 2 and backtest_label_delay({"never": {}}) == 0


def test_a_block_written_as_one_word_is_named_with_its_keys():
    from nbmlops.settings import CalibrationSettings

    with pytest.raises(ConfigError, match=r"env.yaml: `calibration` must be a mapping of its keys "
                                          r"\(\{method: \.\.\., share: \.\.\., threshold: \.\.\.\}\), "
                                          r"not 'sigmoid'"):  # fmt: skip
        CalibrationSettings.from_params("sigmoid", "env.yaml")


@pytest.mark.parametrize(
    ("params", "age", "status", "due", "triggered"),
    [({"every": 2}, 1, "fail", False, False), ({"every": 2}, 2, "pass", True, False),
     ({"trigger": "fail"}, 9, "warn", False, False), ({"trigger": "fail"}, 0, "fail", False, True),
     ({"trigger": "warn"}, 0, "warn", False, True), ({"trigger": "warn"}, 0, "pass", False, False),
     ({"every": 1, "trigger": "warn"}, 1, "fail", True, True)],
)  # fmt: skip
def test_a_policy_says_when_it_is_due_and_what_triggers_it(params, age, status, due, triggered):
    """The one home of the rule `make retrain` and the backtest both apply."""
    from nbmlops.settings import RetrainPolicy

    policy = RetrainPolicy.from_params(params, "env.yaml: retraining")
    assert policy.due_after(age) is due and policy.triggered_by(status) is triggered
