"""Scoring in chunks gives every row the probability the whole batch gives it, and a batch file
is monitored from its chunks: every probability and label, a uniform sample of scored rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nbmlops import metrics as m
from nbmlops.errors import DataError
from nbmlops.monitoring import stream
from nbmlops.spec import FeatureSpec
from nbmlops.training import candidates as models

SPEC = FeatureSpec("defaulted", ["income", "debt_ratio"], ["segment"])


def _loans(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"income": rng.lognormal(10, 0.6, n), "debt_ratio": rng.beta(2, 5, n),
                       "segment": rng.choice(["retail", "sme", "private"], n)})  # fmt: skip
    df["defaulted"] = (rng.random(n) < 0.1 + 0.5 * df["debt_ratio"]).astype(int)
    df.loc[::13, "income"] = np.nan
    return df


@pytest.fixture(scope="module")
def model():
    return models.fit(models.build_candidate("hgb", SPEC, max_iter=30), _loans(2000, 1), SPEC)[0]


def test_chunked_scoring_equals_scoring_at_once(model):
    rows = _loans(2501, 2)
    whole = model.predict_proba(rows[SPEC.columns])[:, 1]
    assert np.array_equal(m.predict_proba(model, rows, SPEC, chunk_rows=400), whole)
    assert np.array_equal(m.predict_proba(model, rows.iloc[:7], SPEC, chunk_rows=400), whole[:7])


def test_a_batch_file_is_scored_in_chunks_with_a_uniform_sample(model, tmp_path):
    rows = _loans(5000, 3)
    path = tmp_path / "batch.parquet"
    rows.to_parquet(path, row_group_size=1500)
    got = stream.score_file(model, path, SPEC, max_rows=600, chunk_rows=700, seed=4)
    whole = model.predict_proba(rows[SPEC.columns])[:, 1]
    assert got.rows == 5000 and np.array_equal(got.proba, whole)
    assert np.array_equal(got.target, rows["defaulted"].to_numpy(dtype=float))
    sample = got.sample
    assert len(sample) == 600 and not sample.duplicated().any()
    # each sampled row is a row of the file with its own probability and decision
    back = sample.merge(rows.assign(expected=whole), on=SPEC.columns + ["defaulted"])
    assert len(back) == 600 and np.array_equal(back[m.PROBA], back["expected"])
    assert (sample[m.PRED] == (sample[m.PROBA] >= 0.5)).all()
    # uniform over the file: drawn from every chunk, not the first rows
    positions = rows.reset_index().merge(sample, on=SPEC.columns)["index"]
    assert positions.min() < 500 and positions.max() > 4500
    counts = np.histogram(positions, bins=5, range=(0, 5000))[0]
    assert counts.min() > 90  # 120 expected per fifth
    everything = stream.score_file(model, path, SPEC, max_rows=0, chunk_rows=700)
    assert len(everything.sample) == 5000


def test_a_file_without_labels_or_without_a_feature(model, tmp_path):
    rows = _loans(300, 5)
    unlabelled = tmp_path / "unlabelled.parquet"
    rows.drop(columns="defaulted").to_parquet(unlabelled)
    got = stream.score_file(model, unlabelled, SPEC, max_rows=100)
    assert got.target is None and len(got.proba) == 300 and len(got.sample) == 100
    broken = tmp_path / "broken.parquet"
    rows.drop(columns="segment").to_parquet(broken)
    with pytest.raises(DataError, match=r"broken.parquet, column 'segment': missing; the models"):
        stream.score_file(model, broken, SPEC, max_rows=100)
