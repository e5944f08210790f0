"""Calibrated probabilities and the decision threshold chosen with them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from nbmlops import calibration
from nbmlops.errors import ConfigError
from nbmlops.metrics.scores import predict_proba
from nbmlops.registry import compiled
from nbmlops.settings import CalibrationSettings
from nbmlops.spec import FeatureSpec
from nbmlops.training import candidates as models
from tests import helpers

SPEC = FeatureSpec("churned", ["usage", "tenure"], ["plan"])


def _accounts(n: int, seed: int) -> pd.DataFrame:
    """A rare class (about 8 %), in time order: what class weighting miscalibrates."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"usage": rng.gamma(2, 10, n), "tenure": rng.integers(1, 120, n) * 1.0,
                       "plan": rng.choice(["basic", "pro", "team"], n)})  # fmt: skip
    logit = -3.2 + 0.04 * df["usage"] - 0.01 * df["tenure"] + (df["plan"] == "basic")
    df["churned"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return df


@pytest.mark.parametrize("kind", ["linear", "boosting", "forest"])
def test_sigmoid_calibration_keeps_the_order_and_matches_the_observed_rate(kind):
    train, later = _accounts(6000, 1), _accounts(4000, 2)
    weighted = helpers.model(kind, SPEC, class_weight="balanced")  # probabilities too high
    plain = models.fit(weighted, train, SPEC)[0]
    settings = CalibrationSettings.from_params({"method": "sigmoid"})
    weighted = helpers.model(kind, SPEC, class_weight="balanced")
    fitted, _, found = models.fit_calibrated(weighted, train, SPEC, settings)
    before, after = (predict_proba(m, later, SPEC) for m in (plain, fitted))
    rate = later["churned"].mean()
    assert found["rows"] == 1200 and found["fitted_on_rows"] == 4800
    assert abs(after.mean() - rate) < 0.02 < abs(before.mean() - rate)
    assert np.mean((after - later["churned"]) ** 2) < np.mean((before - later["churned"]) ** 2)
    # the map keeps the estimator's order: the same ranking as the estimator it wraps
    inner = fitted.steps[-1][1].estimator.predict_proba(fitted[:-1].transform(later[SPEC.columns]))
    assert roc_auc_score(later["churned"], after) == roc_auc_score(later["churned"], inner[:, 1])


def test_isotonic_calibration_is_monotone_and_between_zero_and_one():
    p = np.linspace(0, 1, 500)
    y = (np.random.default_rng(0).random(500) < p**2).astype(int)
    found = calibration.fit_map("isotonic", p, y)
    mapped = calibration.apply_map(found, np.linspace(-0.5, 1.5, 100))
    assert np.all(np.diff(mapped) >= 0) and mapped.min() >= 0 and mapped.max() <= 1


def test_the_threshold_rules_pick_what_they_promise():
    rng = np.random.default_rng(3)
    p = rng.random(2000)
    y = (rng.random(2000) < p).astype(int)
    best, _ = calibration.choose_threshold("best_f1", p, y)
    cuts = np.unique(p)[::20]
    assert f1_score(y, p >= best) >= max(f1_score(y, p >= c) for c in cuts) - 1e-12
    at, note = calibration.choose_threshold(("precision", 0.8), p, y)
    assert note == "" and precision_score(y, p >= at) >= 0.8
    assert recall_score(y, p >= at) >= max(recall_score(y, p >= c) for c in cuts
                                           if precision_score(y, p >= c) >= 0.8)  # fmt: skip
    at, _ = calibration.choose_threshold(("recall", 0.9), p, y)
    assert recall_score(y, p >= at) >= 0.9
    _, note = calibration.choose_threshold(("precision", 1.0), p, 1 - (p > 0.5).astype(int))
    assert note.startswith("no threshold reaches precision 1.0 on the calibration slice")
    assert calibration.choose_threshold(0.3, p, y) == (0.3, "")


def test_the_threshold_goes_with_the_model_into_its_decisions():
    train = _accounts(4000, 5)
    settings = CalibrationSettings.from_params({"threshold": {"recall": 0.7}})
    fitted, _, found = models.fit_calibrated(helpers.model("forest", SPEC), train, SPEC, settings)
    assert found["threshold_rule"] == {"recall": 0.7}
    assert calibration.threshold_of(fitted) == found["threshold"] < 0.5
    proba = fitted.predict_proba(train[SPEC.columns])[:, 1]
    assert np.array_equal(fitted.predict(train[SPEC.columns]), proba >= found["threshold"])


def test_no_map_and_a_number_fit_on_the_whole_window():
    train = _accounts(2000, 6)
    assert CalibrationSettings.from_params({"method": None}).method == "none"  # as read
    settings = CalibrationSettings.from_params({"method": "none", "threshold": 0.4})
    fitted, _, found = models.fit_calibrated(helpers.model("linear", SPEC), train, SPEC, settings)
    assert found == {"method": "none", "threshold": 0.4}
    assert calibration.threshold_of(fitted) == 0.4  # the decisions use it
    plain = models.fit(helpers.model("linear", SPEC), train, SPEC)[0]
    assert np.allclose(fitted.predict_proba(train[SPEC.columns]),
                       plain.predict_proba(train[SPEC.columns]))  # fmt: skip


def test_a_calibration_slice_with_one_class_is_a_clear_error():
    train = _accounts(1000, 7)
    train.loc[800:, "churned"] = 0
    settings = CalibrationSettings.from_params({"share": 0.2})
    with pytest.raises(ConfigError, match=r"env.yaml: calibration: the newest 0.2 of the training "
                                          r"window \(200 rows\) or the rest has one class only"):  # fmt: skip
        models.fit_calibrated(helpers.model("linear", SPEC), train, SPEC, settings, "env.yaml: ")


@pytest.mark.parametrize("kind", ["linear", "forest"])
@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_a_calibrated_pipeline_compiles_to_its_probabilities(kind, method):
    settings = CalibrationSettings.from_params({"method": method})
    fitted = models.fit_calibrated(helpers.model(kind, SPEC), _accounts(3000, 8), SPEC, settings)[0]
    rows = _accounts(500, 9)[SPEC.columns]
    form = compiled.Compiled.from_bytes(compiled.compile_pipeline(fitted, rows).to_bytes())
    assert form.calibration["kind"] == method
    assert compiled.largest_difference(form, fitted, rows) <= compiled.TOLERANCE


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"method": "platt"}, r"calibration.method must be one of sigmoid, isotonic, none"),
        ({"share": 1.5}, r"calibration.share must be a fraction between 0 and 1"),
        ({"share": True}, r"calibration.share must be a fraction"),
        ({"threshold": "best_recall"}, r"calibration.threshold must be best_f1, \{precision: P\}"),
        ({"threshold": {"precision": 1.5}}, r"calibration.threshold must be"),
        ({"threshold": 1}, r"calibration.threshold must be"),
        ({"rule": "best_f1"}, r"unknown key\(s\) \['calibration.rule'\]"),
    ],
)  # fmt: skip
def test_the_calibration_block_is_checked(block, message):
    with pytest.raises(ConfigError, match=message):
        CalibrationSettings.from_params(block, "env.yaml")
