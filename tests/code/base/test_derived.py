"""Derived features in the user's own file: described on the training window, computed inside
every fitted model from the input columns, kept with the model as code, refused with one line."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest

from nbmlops import derived
from nbmlops.data.admission import derive
from nbmlops.data.split import Split
from nbmlops.errors import ConfigError, DataError
from nbmlops.registry import compiled
from nbmlops.serving.fused import Fused, fuse
from nbmlops.serving.payload import InvalidRequest, RequestContract
from nbmlops.spec import FeatureSpec
from nbmlops.training import candidates
from tests import helpers

# Not flights: a subscription table with a signup date's parts, a fee and a plan.
CODE = """import pandas as pd


def derive(rows):
    signup = pd.to_datetime(rows[["year", "month", "day"]], errors="coerce")
    return pd.DataFrame({
        "fee_per_seat": rows["fee"] / rows["seats"],
        "seats": rows["seats"],
        "plan": rows["plan"],
        "signup_weekday": signup.dt.day_name().str[:3],
    }, index=rows.index)
"""


def _table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "year": rng.integers(2020, 2025, n).astype(float),
        "month": rng.integers(1, 13, n).astype(float),
        "day": rng.integers(1, 29, n).astype(float),
        "fee": rng.gamma(3, 20, n).round(2),
        "seats": rng.integers(1, 50, n).astype(float),
        "plan": rng.choice(["basic", "team", "enterprise"], n),
    })  # fmt: skip
    logit = -1 + 0.05 * df["fee"] / df["seats"] - 0.5 * (df["plan"] == "team")
    df["left"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    df.loc[df.sample(frac=0.05, random_state=seed).index, "fee"] = np.nan
    return df


def _spec_and_split(code: str = CODE, tmp_path=None) -> tuple[FeatureSpec, Split]:
    spec = FeatureSpec("left", ["year", "month", "day", "fee", "seats"], ["plan"])
    split = Split(_table(1500, 1), _table(400, 2), _table(300, 3))
    derive(split, spec, derived.Source("features/subscriptions.py", "derive", code))
    return spec, split


def test_the_model_columns_are_described_and_added_beside_the_inputs():
    spec, split = _spec_and_split()
    assert spec.model_numeric == ["fee_per_seat", "seats"]
    assert spec.model_categorical == ["plan", "signup_weekday"]
    assert spec.columns == ["year", "month", "day", "fee", "seats", "plan"]  # a request's fields
    for window in (split.train, split.holdout, split.batches):
        assert {"fee_per_seat", "signup_weekday"} <= set(window.columns)
    row = split.train.iloc[0]
    weekday = pd.Timestamp(int(row["year"]), int(row["month"]), int(row["day"])).day_name()[:3]
    assert row["signup_weekday"] == weekday
    monitored = spec.as_seen_by_model()  # monitoring compares what the model sees
    assert monitored.columns == spec.model_columns and monitored.target == "left"


def test_every_candidate_kind_derives_from_the_inputs_alone_and_compiles():
    spec, split = _spec_and_split()
    rows = split.holdout[spec.columns]  # no derived column: what a request carries
    for kind in sorted(helpers.KINDS):
        model = candidates.fit(helpers.model(kind, spec, seed=1), split.train, spec)[0]
        assert isinstance(model.steps[0][1], derived.Derive)
        expected = model.predict_proba(rows)
        form = compiled.Compiled.from_bytes(compiled.compile_pipeline(model, rows).to_bytes())
        assert np.abs(form.predict_proba(rows) - expected).max() <= compiled.TOLERANCE, kind
        records, frame = compiled.as_records(rows.head(50))
        assert np.abs(form.predict_records(records) - model.predict_proba(frame)).max() < 1e-9
        scorer = fuse(model, rows.head(200))
        assert isinstance(scorer, Fused), kind
        assert np.array_equal(scorer.predict_proba(rows), expected), kind


def test_a_model_keeps_the_code_it_was_trained_with(tmp_path):
    spec, split = _spec_and_split()
    model = candidates.fit(helpers.model("linear", spec), split.train, spec)[0]
    before = model.predict_proba(split.holdout[spec.columns])
    blob = pickle.dumps(model)
    assert b"fee_per_seat" in blob  # the source travels with the model, not a file name alone
    again = pickle.loads(blob)
    assert np.array_equal(again.predict_proba(split.holdout[spec.columns]), before)
    imp = candidates.importances(model, split.holdout, spec, repeats=1)
    assert set(imp["feature"]) == set(spec.model_columns)  # what the estimator sees


BAD = [
    ("returns the target", "return rows.assign(left=1)", "the target and names starting"),
    ("changes an input", "return rows.assign(fee=rows['fee'] * 2)",
     "changes the input column 'fee'"),
    ("drops rows", "return rows.head(3)", "returned 3 rows for 1500"),
    ("raises", "return rows['fees']", "derive raised KeyError: 'fees'"),
    ("returns no frame", "return rows['fee']", "returned a Series, not a data frame"),
    ("an empty column", "return rows.assign(nothing=float('nan'))", "with no value on any"),
]  # fmt: skip


@pytest.mark.parametrize(("label", "body", "words"), BAD, ids=[b[0] for b in BAD])
def test_a_derivation_that_is_not_row_wise_features_is_refused_in_one_line(label, body, words):
    with pytest.raises(DataError, match="features/subscriptions.py") as found:
        _spec_and_split(f"def derive(rows):\n    {body}\n")
    assert words in str(found.value).splitlines()[0], label


def test_the_file_is_named_when_it_cannot_be_used(tmp_path):
    with pytest.raises(ConfigError, match="features.file 'nowhere.py' not found"):
        derived.Source.read("nowhere.py", "derive", tmp_path)
    (tmp_path / "f.py").write_text("def derive(rows):\n    return rows\n")
    with pytest.raises(ConfigError, match="f.py: no function 'derived'"):
        derived.Source.read("f.py", "derived", tmp_path).load()
    (tmp_path / "f.py").write_text("def derive(rows)\n    return rows\n")
    with pytest.raises(ConfigError, match="f.py: SyntaxError"):
        derived.Source.read("f.py", "derive", tmp_path).load()
    assert derived.Source.read(tmp_path / "f.py", None, tmp_path).file == "f.py"  # kept relative


def test_a_request_may_not_carry_a_derived_column():
    spec, split = _spec_and_split()
    contract = RequestContract(spec)
    record = contract.example(split.holdout, 1)[0]
    assert set(record) == set(spec.columns)
    with pytest.raises(InvalidRequest) as refused:
        contract.records(json.dumps(record | {"signup_weekday": "Sat"}).encode())
    assert "'signup_weekday' is derived by the model" in str(refused.value.problems)
