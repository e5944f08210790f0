"""The scale-up generator keeps a month's distributions and copies no row exactly."""

import numpy as np
import pytest

from nbmlops.data import dataset
from nbmlops.settings import DataSettings
from nbmlops.spec import PERIOD
from nbmlops.tools import scaleup
from tests.helpers import flights_tables


@pytest.fixture(scope="module")
def month():
    df, spec = dataset.flights_dataset(flights_tables(12000), DataSettings(target="late"))
    df[PERIOD] = df["_time"].dt.to_period("M").astype(str)
    return df[df[PERIOD] == df[PERIOD].iloc[0]], spec


def test_scaled_batch_keeps_the_months_distributions(month):
    batch, spec = month
    big = scaleup.scale_batch(batch, spec, 50_000, seed=1)
    assert len(big) == 50_000 and list(big.columns) == list(batch.columns)
    for col in ("distance", "temp", "sched_dep_time"):
        assert big[col].mean() == pytest.approx(batch[col].mean(), rel=0.03)
        assert big[col].std() == pytest.approx(batch[col].std(), rel=0.05)
        assert big[col].isna().mean() == pytest.approx(batch[col].isna().mean(), abs=0.01)
    share = batch["carrier"].value_counts(normalize=True)
    big_share = big["carrier"].value_counts(normalize=True).reindex(share.index)
    assert np.abs(big_share - share).max() < 0.01
    assert big["late"].mean() == pytest.approx(batch["late"].mean(), abs=0.01)


def test_scaled_rows_are_not_copies(month):
    batch, spec = month
    big = scaleup.scale_batch(batch, spec, 5_000, seed=2)
    joined = big[["distance", "temp"]].dropna().merge(batch[["distance", "temp"]].dropna())
    assert len(joined) == 0
    same = scaleup.scale_batch(batch, spec, 5_000, seed=2)
    assert same.equals(big)  # seeded: a benchmark sees the same rows every run
