"""Compiled scoring: every candidate kind gives the pipeline's probabilities, and a form that
does not is refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, QuantileTransformer

from nbmlops.registry import compiled
from nbmlops.serving.rendezvous import check_rows, serving_form
from nbmlops.spec import FeatureSpec
from nbmlops.training import candidates as models
from tests import helpers

# Not flights: a churn-like table with a rare plan, missing values and labels built from both kinds.
SPEC = FeatureSpec("churned", ["tenure_days", "monthly_fee", "tickets"], ["plan", "region"])


def _table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "tenure_days": rng.integers(1, 2000, n).astype(float),
        "monthly_fee": rng.gamma(3, 12.5, n).round(2),
        "tickets": rng.poisson(1.2, n).astype(float),
        "plan": rng.choice(["basic", "plus", "pro", "legacy-2019"], n, p=[.5, .3, .19, .01]),
        "region": rng.choice(["north", "south", "east", "west", "überseeisch"], n),
    })  # fmt: skip
    logit = -1 + 0.6 * df["tickets"] - df["tenure_days"] / 800 + (df["plan"] == "basic")
    df["churned"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    df.loc[df.sample(frac=0.08, random_state=seed).index, "monthly_fee"] = np.nan
    df.loc[df.sample(frac=0.05, random_state=seed + 1).index, "region"] = None
    return df


def _fitted(candidate: str):
    return models.fit(helpers.model(candidate, SPEC, seed=3), _table(3000, 1), SPEC)[0]


def _new_rows() -> pd.DataFrame:
    """Rows the models never saw: another draw, unseen categories, missing everywhere."""
    rows = _table(1500, 2)[SPEC.columns]
    rows.loc[rows.index[:20], "plan"] = "enterprise"  # unseen
    rows.loc[rows.index[20:40], "region"] = np.nan
    rows.loc[rows.index[40:60], ["tenure_days", "tickets"]] = np.nan
    return check_rows(SPEC.columns, rows)  # and one row with every value missing


@pytest.mark.parametrize("candidate", sorted(helpers.KINDS))
def test_every_candidate_kind_compiles_to_the_pipelines_probabilities(candidate):
    model = _fitted(candidate)
    form = compiled.compile_pipeline(model, _table(500, 9)[SPEC.columns])
    assert form.kernel == ("onnxruntime" if candidate == "linear" else "treelite")
    again = compiled.Compiled.from_bytes(form.to_bytes())  # as stored: arrays and bytes only
    rows = _new_rows()
    expected = model.predict_proba(rows)
    got = again.predict_proba(rows)
    assert got.shape == expected.shape == (len(rows), 2)
    assert np.abs(got - expected).max() <= compiled.TOLERANCE
    # the rows that matter most are exact too: unseen, missing, all missing
    assert np.abs(got[:60] - expected[:60]).max() < 1e-12
    assert np.abs(got[-1] - expected[-1]).max() < 1e-12
    one = rows.iloc[[7]]
    assert np.abs(again.predict_proba(one) - model.predict_proba(one)).max() < 1e-12
    assert form.report["checked_rows"] == 500 and form.report["tolerance"] == compiled.TOLERANCE


def test_a_compiled_form_of_another_model_is_refused_and_the_pipeline_answers():
    model, other = _fitted("linear"), _fitted("boosting")
    wrong = compiled.compile_pipeline(other, _table(300, 9)[SPEC.columns])
    sample = check_rows(SPEC.columns, _table(64, 4)[SPEC.columns])
    ok, why = compiled.agrees(wrong, model, sample)
    assert not ok and "differs from the pipeline by" in why and "tolerance 1e-06" in why
    loaded = serving_form("7", model, wrong, "", sample)
    assert loaded.form in ("fused", "pipeline") and loaded.note == why
    assert np.array_equal(loaded.model.predict_proba(sample), model.predict_proba(sample))
    right = serving_form("7", model, compiled.compile_pipeline(model, sample), "", sample)
    assert right.form == "compiled (onnxruntime)" and right.note == ""


def test_parts_with_no_compiled_form_are_named():
    train = _table(500, 1)
    quantile = Pipeline([("prep", ColumnTransformer([
        ("num", QuantileTransformer(n_quantiles=50), SPEC.numeric[:1]),
        ("cat", OneHotEncoder(handle_unknown="ignore"), SPEC.categorical)])),
        ("model", LogisticRegression())]).fit(train.fillna({"region": "?"}), train["churned"])  # fmt: skip
    with pytest.raises(compiled.NotCompiled, match="part 'num': QuantileTransformer"):
        compiled.compile_pipeline(quantile, train.head(50))
    with pytest.raises(compiled.NotCompiled, match="only a Pipeline"):
        compiled.compile_pipeline(LogisticRegression(), train.head(50))
    strict = Pipeline([("prep", ColumnTransformer([("cat", OneHotEncoder(), ["plan"])])),
                       ("model", LogisticRegression())]).fit(train, train["churned"])  # fmt: skip
    with pytest.raises(compiled.NotCompiled, match="part 'cat': ValueError.*unknown"):
        compiled.compile_pipeline(strict, train.head(50))


@pytest.mark.parametrize("candidate", sorted(helpers.KINDS))
def test_request_records_score_as_their_frame_does(candidate):
    """The service scores a compiled form straight from the request's records (None for a
    missing value): the same probabilities as the pipeline on the frame of those records."""
    model = _fitted(candidate)
    form = compiled.compile_pipeline(model, _table(500, 9)[SPEC.columns])
    records, frame = compiled.as_records(_new_rows())
    assert any(r["region"] is None for r in records) and any(
        r["plan"] == "enterprise" for r in records
    )
    assert np.abs(form.predict_records(records) - model.predict_proba(frame)).max() < 1e-12
    assert compiled.agrees(form, model, _new_rows()) == (True, "")
