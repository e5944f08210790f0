"""Candidate models: scikit-learn pipelines built by name, trained and compared."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from .. import storage
from ..errors import ConfigError
from ..registry.store import IntegrityError
from ..spec import HIGHER_IS_BETTER, FeatureSpec


def _one_hot(spec: FeatureSpec) -> ColumnTransformer:
    return ColumnTransformer(
        [
            (
                "num",
                make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                spec.numeric,
            ),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="missing"),
                    OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20),
                ),
                spec.categorical,
            ),
        ]
    )


def _ordinal(spec: FeatureSpec, missing_value: float | int) -> ColumnTransformer:
    encoder = OrdinalEncoder(
        handle_unknown="use_encoded_value",
        unknown_value=missing_value,
        encoded_missing_value=missing_value,
    )
    numeric = SimpleImputer(strategy="median") if not np.isnan(missing_value) else "passthrough"
    return ColumnTransformer(
        [("num", numeric, spec.numeric), ("cat", encoder, spec.categorical)],
        verbose_feature_names_out=False,
    )


def _logreg(spec: FeatureSpec, seed: int, **hp: Any) -> Pipeline:
    hp = {"C": 1.0, "max_iter": 1000, **hp}
    model = LogisticRegression(class_weight="balanced", random_state=seed, **hp)
    return Pipeline([("prep", _one_hot(spec)), ("model", model)])


def _hgb(spec: FeatureSpec, seed: int, **hp: Any) -> Pipeline:
    hp = {"max_iter": 200, "learning_rate": 0.1, "max_leaf_nodes": 31, **hp}
    n_num = len(spec.numeric)
    cat_mask = [False] * n_num + [True] * len(spec.categorical)
    model = HistGradientBoostingClassifier(
        categorical_features=cat_mask if spec.categorical else None,
        class_weight="balanced",
        random_state=seed,
        **hp,
    )
    return Pipeline([("prep", _ordinal(spec, np.nan)), ("model", model)])


def _rf(spec: FeatureSpec, seed: int, **hp: Any) -> Pipeline:
    hp = {"n_estimators": 150, "min_samples_leaf": 20, "max_features": "sqrt", **hp}
    model = RandomForestClassifier(
        class_weight="balanced_subsample", random_state=seed, n_jobs=1, **hp
    )
    return Pipeline([("prep", _ordinal(spec, -1)), ("model", model)])


CANDIDATES: dict[str, Callable[..., Pipeline]] = {"logreg": _logreg, "hgb": _hgb, "rf": _rf}


def build_candidate(name: str, spec: FeatureSpec, seed: int = 0, **hyperparams: Any) -> Pipeline:
    """An unfitted pipeline for candidate `name` with its hyperparameters."""
    if name not in CANDIDATES:
        raise ConfigError(f"unknown model {name!r}; known: {sorted(CANDIDATES)}")
    try:
        return CANDIDATES[name](spec, seed, **hyperparams)
    except TypeError as exc:
        raise ConfigError(f"model {name!r}: bad hyperparameters {hyperparams}: {exc}") from None


def fit(pipeline: Pipeline, data: pd.DataFrame, spec: FeatureSpec) -> tuple[Pipeline, float]:
    """Fit on `data`; returns the pipeline and the seconds it took."""
    start = time.perf_counter()
    pipeline.fit(data[spec.columns], data[spec.target])
    return pipeline, time.perf_counter() - start


def save(pipeline: Pipeline, record: dict[str, Any], model_file, metrics_file) -> None:
    """A trained candidate: the model file, then its record with the model file's sha256."""
    storage.write_pickle(model_file, pipeline)
    storage.write_json(metrics_file, record | {"sha256": storage.sha256_file(model_file)})


def load(model_file, record: dict[str, Any]) -> Pipeline:
    """A trained candidate's model, after checking the file against the sha256 its record
    holds (a file changed or swapped since training is refused)."""
    expected = record.get("sha256")
    actual = storage.sha256_file(model_file)
    if actual != expected:
        raise IntegrityError(
            f"{model_file}: sha256 {actual[:16]}…, its metrics file records "
            f"{str(expected)[:16]}…; refusing to load it (make build trains it again)"
        )
    return storage.read_pickle(model_file)


def compare(candidates: dict[str, dict[str, float]], primary: str) -> pd.DataFrame:
    """Candidates' metrics side by side, best first by the primary metric."""
    if primary not in HIGHER_IS_BETTER + ("brier", "log_loss"):
        raise ConfigError(f"unknown primary_metric {primary!r}")
    table = pd.DataFrame(candidates).T
    table.index.name = "model"
    ascending = primary not in HIGHER_IS_BETTER
    return table.sort_values(primary, ascending=ascending).reset_index()
