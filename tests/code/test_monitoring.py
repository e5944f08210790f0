import math

import numpy as np
import pandas as pd
import pytest

from nbmlops import models, monitoring
from nbmlops.features import FeatureSpec

SPEC = FeatureSpec("y", ["x1", "x2"], ["c"])


def _scored(n, shift=0.0, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "x1": rng.normal(shift, 1, n),
            "x2": rng.normal(0, 1, n),
            "c": rng.choice(["a", "b"], n),
            "y": rng.integers(0, 2, n),
        }
    )
    proba = 1 / (1 + np.exp(-(df["x1"] + rng.normal(0, 1, n))))
    return models.scored_frame(df, SPEC, proba.to_numpy())


@pytest.fixture(scope="module")
def reference():
    return _scored(3000, seed=1)


def test_batch_from_reference_shows_no_drift(tmp_path, reference):
    row = monitoring.batch_report(reference, _scored(2000, seed=2), SPEC, tmp_path / "r.html", 0.5)
    assert row["drift_share"] == 0 and not row["dataset_drift"] and not row["prediction_drift"]
    assert (tmp_path / "r.html").stat().st_size > 10_000
    assert row["tests_total"] > 0


def test_shifted_batch_shows_feature_and_prediction_drift(tmp_path, reference):
    row = monitoring.batch_report(
        reference, _scored(2000, 1.0, seed=3), SPEC, tmp_path / "r.html", 0.3
    )
    assert row["drifted_features"] == ["x1"]
    assert row["drift_share"] == pytest.approx(1 / 3)
    assert row["dataset_drift"] and row["prediction_drift"]
    assert row["prediction_drift_score"] > 0.1


def test_unlabelled_batch_gets_drift_only(tmp_path, reference):
    batch = _scored(500, seed=4).assign(y=np.nan)
    row = monitoring.batch_report(reference, batch, SPEC, tmp_path / "r.html", 0.5)
    assert not monitoring.has_labels(batch, SPEC)
    assert "drift_share" in row


def test_gate_reasons():
    ok = {"dataset_drift": False, "prediction_drift": False, "drift_share": 0.1, "roc_auc": 0.7}
    assert monitoring.gate(ok, 0.6) == (True, [])
    bad = ok | {"dataset_drift": True, "drift_share": 0.6, "roc_auc": 0.55}
    passed, reasons = monitoring.gate(bad, 0.6)
    assert not passed and reasons == ["data drift in 60% of features", "ROC AUC 0.550 below 0.6"]
    assert monitoring.gate(ok | {"roc_auc": math.nan}, 0.6)[0]
