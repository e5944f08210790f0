"""Candidate models as the env file declares them (`candidates`): any estimator with the
scikit-learn API by its dotted path and parameters, behind the column preparation the template
chooses by the estimator's kind; trained, saved and compared."""

from __future__ import annotations

import difflib
import importlib
import inspect
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from .. import calibration, derived, storage
from ..errors import ConfigError
from ..registry.errors import IntegrityError
from ..settings import CalibrationSettings, check_selection_metric
from ..spec import HIGHER_IS_BETTER, FeatureSpec


def _one_hot(spec: FeatureSpec) -> ColumnTransformer:
    return ColumnTransformer(
        [
            (
                "num",
                make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                spec.model_numeric,
            ),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="missing"),
                    OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20),
                ),
                spec.model_categorical,
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
        [("num", numeric, spec.model_numeric), ("cat", encoder, spec.model_categorical)],
        verbose_feature_names_out=False,
    )


#: Modules whose estimators are trees: their columns are coded as ordinals, not one-hot.
TREE_MODULES = ("sklearn.ensemble", "sklearn.tree", "lightgbm", "xgboost", "catboost")


def estimator_class(candidate: dict, where: str = "candidates") -> type:
    """The class a candidate's `estimator` names (a dotted path), imported."""
    module_name, _, class_name = candidate["estimator"].rpartition(".")
    key = f"{where}.{candidate['name']}.estimator"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{key}: cannot import {module_name!r} ({exc}); is it installed "
                          "in the project's environment?") from None  # fmt: skip
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise ConfigError(f"{key}: module {module_name!r} has no class {class_name!r}")
    return cls


def preparation(candidate: dict, cls: type) -> str:
    """How the columns are prepared for the estimator: the candidate's `prep`, else by kind:
    `native` for histogram gradient boosting (missing values and categories handled by the
    estimator), `ordinal` for other trees, `onehot` (scaled numbers) for the rest."""
    if candidate.get("prep"):
        return candidate["prep"]
    if cls.__name__.startswith("HistGradientBoosting"):
        return "native"
    if cls.__module__.startswith(TREE_MODULES):
        return "ordinal"
    return "onehot"


def _parameters(cls: type) -> tuple[set[str], bool]:
    """The parameters the estimator lists (its constructor's, and those `get_params` of a
    default instance gives: XGBoost keeps most behind `**kwargs`), and whether it takes any
    other keyword."""
    signature = inspect.signature(cls.__init__)
    names = {p.name for p in signature.parameters.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}  # fmt: skip
    open_ended = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
    try:
        names |= set(cls().get_params(deep=False))
    except Exception:  # noqa: BLE001 - an estimator with required arguments lists no defaults
        pass
    return names, open_ended


def build(candidate: dict, spec: FeatureSpec, seed: int = 0, where: str = "candidates") -> Pipeline:
    """An unfitted pipeline for a declared candidate: the template's column preparation, then
    the estimator with the candidate's parameters (and `random_state=seed` where the estimator
    takes one and the candidate does not set it).

    A parameter the estimator does not take, or a value it refuses, is a ConfigError naming
    the candidate and the parameter.
    """
    cls = estimator_class(candidate, where)
    key = f"{where}.{candidate['name']}"
    params = dict(candidate.get("params") or {})
    names, open_ended = _parameters(cls)
    unknown = sorted(set(params) - names)
    close = {k: difflib.get_close_matches(k, names, n=1) for k in unknown}
    # An estimator that takes any keyword (LightGBM, XGBoost) ignores a misspelt one: refused
    # where it is close to a listed name, passed on with a warning otherwise.
    refused = {k: c for k, c in close.items() if not open_ended or c}
    if refused:
        hints = ", ".join(f"{k!r}" + (f" (did you mean {c[0]!r}?)" if c else "")
                          for k, c in refused.items())  # fmt: skip
        raise ConfigError(f"{key}.params: {cls.__name__} takes no parameter {hints}")
    if unknown:
        warnings.warn(f"{key}.params: {cls.__name__} lists no parameter {unknown}; it takes any "
                      "keyword, so they are passed on as they are", stacklevel=2)  # fmt: skip
    if "random_state" in names and "random_state" not in params:
        params["random_state"] = seed
    kind = preparation(candidate, cls)
    if kind == "native" and "categorical_features" in names and spec.model_categorical:
        params.setdefault("categorical_features", [False] * len(spec.model_numeric)
                          + [True] * len(spec.model_categorical))  # fmt: skip
    try:
        estimator = cls(**params)
        if getattr(estimator, "_parameter_constraints", None) is not None:
            estimator._validate_params()  # scikit-learn's own check of every value
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}.params: {cls.__name__}: {exc}") from None
    if not hasattr(estimator, "predict_proba"):
        raise ConfigError(f"{key}: {cls.__name__} with these parameters has no predict_proba; "
                          "the template ranks, calibrates and monitors probabilities")  # fmt: skip
    prep = {"onehot": lambda: _one_hot(spec), "ordinal": lambda: _ordinal(spec, -1),
            "native": lambda: _ordinal(spec, np.nan)}[kind]()  # fmt: skip
    steps = [("prep", prep), ("model", estimator)]
    return Pipeline([("derive", derived.step(spec)), *steps] if spec.derived else steps)


def fit(pipeline: Pipeline, data: pd.DataFrame, spec: FeatureSpec) -> tuple[Pipeline, float]:
    """Fit on `data`; returns the pipeline and the seconds it took."""
    start = time.perf_counter()
    pipeline.fit(data[spec.columns], data[spec.target])
    return pipeline, time.perf_counter() - start


def fit_calibrated(
    pipeline: Pipeline,
    data: pd.DataFrame,
    spec: FeatureSpec,
    settings: CalibrationSettings,
    where: str = "",
) -> tuple[Pipeline, float, dict]:
    """Fit on the training window as `settings` says: on its older part, then the map from
    probability to observed rate and the decision threshold on its newest part
    (`calibration.calibrate`); with `method: none` and a number as threshold, on all of it.
    Returns the pipeline, the seconds it took and what the calibration found."""
    if not settings.holds_back:
        pipeline, seconds = fit(pipeline, data, spec)
        model = calibration.Calibrated(pipeline.steps[-1][1])  # the declared threshold kept
        model.map_, model.threshold_ = {"kind": "none"}, float(settings.threshold)
        model.classes_ = np.array([0, 1])
        pipeline.steps[-1] = (pipeline.steps[-1][0], model)
        return pipeline, seconds, {"method": "none", "threshold": float(settings.threshold)}
    start = time.perf_counter()
    older, newest = calibration.held_back(data, settings)
    found = calibration.calibrate(pipeline, older, newest, spec.columns, spec.target, settings,
                                  where)  # fmt: skip
    return pipeline, time.perf_counter() - start, found


def record(candidate: dict, fit_seconds: float, train_metrics: dict,
           calibrated: dict | None = None) -> dict:  # fmt: skip
    """What a trained candidate's metrics file holds beside the model file's hash."""
    return {"model": candidate["name"], "estimator": candidate["estimator"],
            "hyperparams": dict(candidate.get("params") or {}), "fit_seconds": fit_seconds,
            "train": train_metrics, "calibration": calibrated or {}}  # fmt: skip


def importances(pipeline: Pipeline, data: pd.DataFrame, spec: FeatureSpec, seed: int = 0,
                max_rows: int = 5000, repeats: int = 3) -> pd.DataFrame:  # fmt: skip
    """Permutation importance of each column the estimator sees (the derived ones, where the
    pipeline derives) on `data` (a sample of `max_rows`): how much ROC AUC falls when the
    column's values are shuffled; largest first."""
    from sklearn.inspection import permutation_importance

    rows = data.sample(min(len(data), max_rows), random_state=seed) if len(data) else data
    columns = spec.model_columns
    if rows[spec.target].nunique() < 2:
        return pd.DataFrame({"feature": columns, "importance": np.nan, "spread": np.nan})
    scorer, x = pipeline, rows[spec.columns]
    if isinstance(pipeline.steps[0][1], derived.Derive):  # shuffle what the estimator sees
        scorer, x = pipeline[1:], pipeline[0].transform(x)
    found = permutation_importance(
        scorer, x[columns], rows[spec.target], scoring="roc_auc", n_repeats=repeats,
        random_state=seed,
    )  # fmt: skip
    table = pd.DataFrame({"feature": columns, "importance": found.importances_mean,
                          "spread": found.importances_std})  # fmt: skip
    return table.sort_values("importance", ascending=False, ignore_index=True)


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


def compare(candidates: dict[str, dict[str, float]], metric: str) -> pd.DataFrame:
    """Candidates' metrics side by side, best first by `metric` (the env's selection_metric)."""
    check_selection_metric(metric)
    table = pd.DataFrame(candidates).T
    table.index.name = "model"
    ascending = metric not in HIGHER_IS_BETTER
    return table.sort_values(metric, ascending=ascending).reset_index()
