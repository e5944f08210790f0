"""Batches larger than the real data, for benchmarks: resample a month's rows and add noise.

`scale_batch(batch, spec, rows, seed)` draws `rows` rows with replacement from one batch (one
month of flights), then moves every numeric feature by Gaussian noise of `noise` times that
month's standard deviation of the column. Category frequencies, each numeric column's mean and
spread (the spread grows by a factor of sqrt(1 + noise**2), 0.5 % at the default) and the
month's delay rate are kept; no row is an exact copy of a real one, so a model or a drift test
cannot tell a scaled batch from a larger month by duplicate rows. Labels and the model inputs
travel together, so a model's performance on a scaled batch matches its performance on the
month it came from.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..spec import FeatureSpec

NOISE = 0.1


def scale_batch(
    batch: pd.DataFrame, spec: FeatureSpec, rows: int, seed: int = 0, noise: float = NOISE
) -> pd.DataFrame:
    """`rows` rows drawn from `batch` with replacement, numeric features jittered."""
    if batch.empty:
        raise ValueError("cannot scale an empty batch")
    rng = np.random.default_rng(seed)
    picked = batch.iloc[rng.integers(0, len(batch), rows)].reset_index(drop=True)
    for col in spec.numeric:
        values = picked[col].to_numpy(dtype="float64", copy=True)
        spread = float(np.nanstd(batch[col].to_numpy(dtype="float64")))
        if spread > 0:
            values += rng.normal(0.0, noise * spread, rows)
        picked[col] = values
    return picked
