"""Data larger than the real data, for benchmarks: scaled-up batches and a user's table.

`scale_batch(batch, spec, rows, seed)` draws `rows` rows with replacement from one batch (one
month of flights), then moves every numeric input column by Gaussian noise of `noise` times
that month's standard deviation of the column; a column of few whole numbers (a date's parts,
a count of engines) is a code, kept as it is. Category frequencies, each numeric column's mean and
spread (the spread grows by a factor of sqrt(1 + noise**2), 0.5 % at the default) and the
month's delay rate are kept; no row is an exact copy of a real one, so a model or a drift test
cannot tell a scaled batch from a larger month by duplicate rows. Labels and the model inputs
travel together, so a model's performance on a scaled batch matches its performance on the
month it came from.

`user_table(rows, seed)` is a table of the kind `nbmlops init` is pointed at, of any size: a
customer book with a daily sign-up date, a customer number on every row, numbers (one with
`n/a` where unknown), categories and a 'yes'/'no' label that the numbers predict, about 15 %
'yes'.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..spec import FeatureSpec

NOISE = 0.1


def scale_batch(
    batch: pd.DataFrame, spec: FeatureSpec, rows: int, seed: int = 0, noise: float = NOISE
) -> pd.DataFrame:
    """`rows` rows drawn from `batch` with replacement, numeric inputs jittered (codes kept)."""
    if batch.empty:
        raise ValueError("cannot scale an empty batch")
    rng = np.random.default_rng(seed)
    picked = batch.iloc[rng.integers(0, len(batch), rows)].reset_index(drop=True)
    for col in spec.numeric:
        if _code(batch[col]):
            continue
        values = picked[col].to_numpy(dtype="float64", copy=True)
        spread = float(np.nanstd(batch[col].to_numpy(dtype="float64")))
        if spread > 0:
            values += rng.normal(0.0, noise * spread, rows)
        picked[col] = values
    return picked


#: A numeric column of at most this many distinct whole numbers is a code, not a measure.
CODE_VALUES = 31


def _code(values: pd.Series) -> bool:
    present = values.dropna().to_numpy(dtype="float64")
    return bool(len(present)) and bool(np.all(present == np.round(present))) and len(
        np.unique(present)) <= CODE_VALUES  # fmt: skip


def user_table(rows: int, seed: int = 0) -> pd.DataFrame:
    """A churn table of `rows` rows over two years of daily sign-ups (12 columns)."""
    rng = np.random.default_rng(seed)
    days = np.sort(rng.integers(0, 730, rows))
    age = rng.integers(18, 90, rows)
    tenure = rng.integers(0, 120, rows)
    products = rng.integers(1, 5, rows)
    balance = np.round(rng.gamma(2.0, 2500.0, rows), 2)
    score = np.round(rng.normal(650, 80, rows), 1)
    plan = rng.choice(["basic", "plus", "premium"], rows, p=[0.6, 0.3, 0.1])
    logit = -2.4 - 0.02 * (tenure - 60) + 0.6 * (products == 1) + 0.5 * (plan == "basic")
    churned = rng.random(rows) < 1 / (1 + np.exp(-logit))
    income = np.round(np.exp(rng.normal(10.5, 0.5, rows)), 0).astype(object)
    income[rng.random(rows) < 0.02] = "n/a"
    return pd.DataFrame({
        "signup_date": (np.datetime64("2023-01-01") + days.astype("timedelta64[D]")).astype(str),
        "customer_id": np.arange(1_000_000, 1_000_000 + rows),
        "age": age,
        "income": income,
        "balance": balance,
        "tenure_months": tenure,
        "products": products,
        "credit_score": score,
        "region": rng.choice(["north", "south", "east", "west", "centre"], rows),
        "plan": plan,
        "channel": rng.choice(["web", "shop", "phone", "partner"], rows),
        "churned": np.where(churned, "yes", "no"),
    })  # fmt: skip
