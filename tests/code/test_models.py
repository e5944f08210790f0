import numpy as np
import pandas as pd
import pytest

from nbmlops import metrics
from nbmlops.errors import ConfigError
from nbmlops.spec import FeatureSpec
from nbmlops.training import candidates as models


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n = 1500
    x = rng.normal(size=n)
    c = rng.choice(["a", "b", "c"], n)
    logit = 2 * x + (c == "a") * 1.5 - 1
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    x_missing = np.where(rng.random(n) < 0.05, np.nan, x)
    df = pd.DataFrame({"x": x_missing, "c": np.where(rng.random(n) < 0.02, None, c), "y": y})
    return df, FeatureSpec("y", ["x"], ["c"])


@pytest.mark.parametrize("name", sorted(models.CANDIDATES))
def test_each_candidate_learns_a_simple_signal(data, name):
    df, spec = data
    train, test = df.iloc[:1000], df.iloc[1000:]
    pipeline, seconds = models.fit(models.build_candidate(name, spec, seed=1), train, spec)
    proba = metrics.predict_proba(pipeline, test, spec)
    assert ((proba >= 0) & (proba <= 1)).all() and seconds > 0
    assert metrics.classification_metrics(test["y"], proba)["roc_auc"] > 0.75


@pytest.mark.parametrize("name", sorted(models.CANDIDATES))
def test_unseen_category_scores_without_error(data, name):
    df, spec = data
    pipeline, _ = models.fit(models.build_candidate(name, spec), df, spec)
    unseen = pd.DataFrame({"x": [0.1], "c": ["never-seen"], "y": [0]})
    assert metrics.predict_proba(pipeline, unseen, spec).shape == (1,)


def test_unknown_model_and_bad_hyperparameters(data):
    _, spec = data
    with pytest.raises(ConfigError, match="unknown model 'svm'"):
        models.build_candidate("svm", spec)
    with pytest.raises(ConfigError, match="model 'logreg': bad hyperparameters"):
        models.build_candidate("logreg", spec, depth=3)


def test_metrics_on_perfect_and_inverted_scores():
    y = np.array([0, 0, 1, 1])
    perfect = metrics.classification_metrics(y, np.array([0.1, 0.2, 0.8, 0.9]))
    assert perfect["roc_auc"] == 1.0 and perfect["f1"] == 1.0 and perfect["rows"] == 4
    inverted = metrics.classification_metrics(y, np.array([0.9, 0.8, 0.2, 0.1]))
    assert inverted["roc_auc"] == 0.0 and inverted["recall"] == 0.0


def test_compare_orders_by_primary_metric_direction():
    scores = {"a": {"roc_auc": 0.7, "brier": 0.2}, "b": {"roc_auc": 0.8, "brier": 0.25}}
    assert models.compare(scores, "roc_auc")["model"].tolist() == ["b", "a"]
    assert models.compare(scores, "brier")["model"].tolist() == ["a", "b"]
    with pytest.raises(ConfigError, match="unknown primary_metric"):
        models.compare(scores, "auc")
