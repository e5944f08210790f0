import numpy as np
import pandas as pd
import pytest

from nbmlops.envfile import read_unique
from nbmlops.errors import ConfigError
from nbmlops.metrics.scores import classification_metrics, predict_proba
from nbmlops.settings import candidate_grid
from nbmlops.spec import FeatureSpec
from nbmlops.training import candidates
from tests import helpers


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


@pytest.mark.parametrize("name", sorted(helpers.KINDS))
def test_each_candidate_learns_a_simple_signal(data, name):
    df, spec = data
    train, test = df.iloc[:1000], df.iloc[1000:]
    pipeline, seconds = candidates.fit(helpers.model(name, spec, seed=1), train, spec)
    proba = predict_proba(pipeline, test, spec)
    assert ((proba >= 0) & (proba <= 1)).all() and seconds > 0
    assert classification_metrics(test["y"], proba)["roc_auc"] > 0.75


@pytest.mark.parametrize("name", sorted(helpers.KINDS))
def test_unseen_category_scores_without_error(data, name):
    df, spec = data
    pipeline, _ = candidates.fit(helpers.model(name, spec), df, spec)
    unseen = pd.DataFrame({"x": [0.1], "c": ["never-seen"], "y": [0]})
    assert predict_proba(pipeline, unseen, spec).shape == (1,)


def test_the_preparation_follows_the_estimators_kind_unless_declared(data):
    _, spec = data
    kinds = {name: candidates.preparation(c, candidates.estimator_class(c))
             for name in helpers.KINDS for c in [helpers.declared(name)]}  # fmt: skip
    assert kinds == {"linear": "onehot", "boosting": "native", "forest": "ordinal",
                     "extra-trees": "ordinal"}  # fmt: skip
    knn = {"name": "knn", "estimator": "sklearn.neighbors.KNeighborsClassifier", "params": {}}
    assert candidates.preparation(knn, candidates.estimator_class(knn)) == "onehot"
    pipeline = candidates.build(knn | {"prep": "ordinal"}, spec)
    assert type(pipeline.named_steps["prep"].transformers[1][1]).__name__ == "OrdinalEncoder"
    boosting = candidates.build(helpers.declared("boosting"), spec).named_steps["model"]
    assert list(boosting.categorical_features) == [False, True]  # told which columns are codes


def test_an_estimator_that_takes_any_keyword_is_checked_as_far_as_it_lists_them(data):
    df, spec = data
    declared = {"name": "kw", "estimator": "tests.helpers.KeywordClassifier", "params": {}}
    with pytest.raises(ConfigError, match=r"candidates.kw.params: KeywordClassifier takes no "
                                          r"parameter 'n_estimator' \(did you mean 'n_estimators'\?\)"):  # fmt: skip
        candidates.build(declared | {"params": {"n_estimator": 5}}, spec)
    with pytest.warns(UserWarning, match=r"lists no parameter \['verbose'\]; it takes any keyword"):
        pipeline = candidates.build(declared | {"params": {"n_estimators": 5, "verbose": -1}}, spec)
    fitted, _ = candidates.fit(pipeline, df, spec)
    assert fitted.named_steps["model"].get_params() == {"n_estimators": 5, "verbose": -1}
    assert predict_proba(fitted, df, spec).shape == (len(df),)


def test_the_seed_reaches_the_estimator_unless_the_candidate_sets_it(data):
    _, spec = data
    assert (
        candidates.build(helpers.declared("forest"), spec, 7).named_steps["model"].random_state == 7
    )
    fixed = helpers.declared("forest", random_state=1)
    assert candidates.build(fixed, spec, 7).named_steps["model"].random_state == 1
    knn = {"name": "knn", "estimator": "sklearn.neighbors.KNeighborsClassifier", "params": {}}
    assert "random_state" not in candidates.build(knn, spec, 7).named_steps["model"].get_params()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"estimator": "sklearn.ensemble.ExtraTreeClassifierz"},
         r"env.yaml: candidates.forest.estimator: module 'sklearn.ensemble' has no class "
         r"'ExtraTreeClassifierz'"),
        ({"estimator": "nosuchlibrary.Model"},
         r"candidates.forest.estimator: cannot import 'nosuchlibrary' .*is it installed"),
        ({"params": {"n_estimator": 10}},
         r"candidates.forest.params: RandomForestClassifier takes no parameter 'n_estimator' "
         r"\(did you mean 'n_estimators'\?\)"),
        ({"params": {"n_estimators": -3}},
         r"candidates.forest.params: RandomForestClassifier: The 'n_estimators' parameter"),
        ({"estimator": "sklearn.svm.SVC", "params": {}},
         r"candidates.forest: SVC with these parameters has no predict_proba"),
    ],
)  # fmt: skip
def test_a_wrong_declaration_is_one_line_naming_the_candidate(data, change, message):
    _, spec = data
    candidate = helpers.declared("forest") | change
    with pytest.raises(ConfigError, match=message) as caught:
        candidates.build(candidate, spec, 0, "env.yaml: candidates")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (None, r"env.ci.yaml: `candidates` must name at least one candidate"),
        ({True: "sklearn.tree.DecisionTreeClassifier"},
         r"candidate name True is not a name .*quote it if YAML read it as a boolean"),
        ({"a b": "sklearn.tree.DecisionTreeClassifier"}, r"candidate name 'a b' is not a name"),
        ({"best": "sklearn.tree.DecisionTreeClassifier"},
         r"candidate name 'best' is taken by the comparison's own file \(models/best.json\)"),
        ({"tree": {"estimator": "DecisionTreeClassifier"}},
         r"candidates.tree.estimator must be the dotted path of an estimator class"),
        ({"tree": {"estimator": "sklearn.tree.DecisionTreeClassifier", "param": {}}},
         r"candidates.tree: unknown key\(s\) \['param'\]"),
        ({"tree": {"estimator": "sklearn.tree.DecisionTreeClassifier", "prep": "scaled"}},
         r"candidates.tree.prep must be one of onehot, ordinal, native"),
    ],
)  # fmt: skip
def test_the_candidates_block_is_checked_before_anything_is_imported(block, message):
    with pytest.raises(ConfigError, match=message):
        candidate_grid(block, "env.ci.yaml")


def test_a_candidate_may_be_a_bare_dotted_path_and_keeps_the_files_order():
    grid = candidate_grid({"tree": "sklearn.tree.DecisionTreeClassifier",
                           "knn": {"estimator": "sklearn.neighbors.KNeighborsClassifier",
                                   "params": {"n_neighbors": 25}}})  # fmt: skip
    assert grid == [
        {"name": "tree", "estimator": "sklearn.tree.DecisionTreeClassifier", "params": {}},
        {"name": "knn", "estimator": "sklearn.neighbors.KNeighborsClassifier",
         "params": {"n_neighbors": 25}},
    ]  # fmt: skip


def test_a_candidate_written_twice_in_the_env_file_is_refused(tmp_path):
    env = tmp_path / "env.yaml"
    env.write_text("candidates:\n  rf: sklearn.ensemble.RandomForestClassifier\n"
                   "  rf: sklearn.ensemble.ExtraTreesClassifier\n")  # fmt: skip
    with pytest.raises(ConfigError, match=r"env.yaml: line 3: key 'rf' is written twice in one "
                                          r"mapping \(first on line 2\)"):  # fmt: skip
        read_unique(env)


def test_metrics_on_perfect_and_inverted_scores():
    y = np.array([0, 0, 1, 1])
    perfect = classification_metrics(y, np.array([0.1, 0.2, 0.8, 0.9]))
    assert perfect["roc_auc"] == 1.0 and perfect["f1"] == 1.0 and perfect["rows"] == 4
    inverted = classification_metrics(y, np.array([0.9, 0.8, 0.2, 0.1]))
    assert inverted["roc_auc"] == 0.0 and inverted["recall"] == 0.0


def test_compare_orders_by_the_selection_metric_direction():
    scores = {"a": {"roc_auc": 0.7, "brier": 0.2}, "b": {"roc_auc": 0.8, "brier": 0.25}}
    assert candidates.compare(scores, "roc_auc")["model"].tolist() == ["b", "a"]
    assert candidates.compare(scores, "brier")["model"].tolist() == ["a", "b"]
    with pytest.raises(ConfigError, match="selection_metric 'auc' is not a metric"):
        candidates.compare(scores, "auc")
