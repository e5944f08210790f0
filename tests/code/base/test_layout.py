import re
import shutil

import pytest
import yaml

from nbmlops.errors import ConfigError
from nbmlops.layout import Layout
from tests.conftest import PROJECT


def test_products_are_the_paths_pipeline_yaml_names_with_the_env_values():
    layout = Layout.from_env(PROJECT / "env.ci.yaml")
    assert (
        layout.product("features", "spec") == PROJECT / "products" / "ci" / "data" / "features.json"
    )
    assert (
        layout.product("ingest", "holdout")
        == PROJECT / "products" / "ci" / "data" / "holdout.parquet"
    )
    assert (
        layout.product("monitor", "tests")
        == PROJECT / "reports" / "ci" / "monitoring" / "tests.json"
    )
    assert layout.reports == PROJECT / "reports" / "ci"


def test_an_unknown_product_is_named():
    with pytest.raises(ConfigError, match="names no product 'spec' of a task 'train'"):
        Layout.from_env(PROJECT / "env.ci.yaml").product("train", "spec")


def test_relative_paths_start_at_the_pipeline_folder(tmp_path):
    shutil.copy(PROJECT / "pipeline.yaml", tmp_path)
    text = (PROJECT / "env.ci.yaml").read_text().replace('"{{here}}/products/ci"', "build/out")
    (tmp_path / "env.x.yaml").write_text(text)
    layout = Layout.from_env(tmp_path / "env.x.yaml")
    assert (
        layout.product("features", "spec") == tmp_path / "build" / "out" / "data" / "features.json"
    )


def test_an_env_file_elsewhere_uses_the_pipeline_of_the_current_folder(tmp_path, monkeypatch):
    shutil.copy(PROJECT / "env.ci.yaml", tmp_path / "env.elsewhere.yaml")
    monkeypatch.chdir(PROJECT / "notebooks")  # Ploomber looks in the folder, then its parents
    layout = Layout.from_env(tmp_path / "env.elsewhere.yaml")
    expected = tmp_path / "products" / "ci" / "data" / "features.json"
    assert layout.product("features", "spec") == expected
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="no pipeline.yaml beside it"):
        Layout.from_env(tmp_path / "env.elsewhere.yaml")


def test_each_candidate_of_the_env_file_has_products_named_by_it(tmp_path):
    shutil.copy(PROJECT / "pipeline.yaml", tmp_path)
    env = yaml.safe_load((PROJECT / "env.ci.yaml").read_text())
    env["candidates"] = {"trees": {"estimator": "sklearn.ensemble.ExtraTreesClassifier"},
                         "linear": "sklearn.linear_model.LogisticRegression"}  # fmt: skip
    (tmp_path / "env.ci.yaml").write_text(yaml.safe_dump(env, sort_keys=False))
    layout = Layout.from_env(tmp_path / "env.ci.yaml")
    assert [c["name"] for c in layout.candidates] == ["trees", "linear"]
    models = tmp_path / "products" / "ci" / "models"
    assert layout.candidate_product("trees", "model") == models / "trees.pkl"
    assert layout.candidate_product("linear", "metrics") == models / "linear.json"


def test_every_product_the_package_asks_for_is_in_pipeline_yaml():
    asked = set()
    for path in (PROJECT / "src" / "nbmlops").rglob("*.py"):
        asked |= set(re.findall(r'product\("([\w\-\[\]]+)", "(\w+)"\)', path.read_text()))
    assert len(asked) >= 5
    layout = Layout.from_env(PROJECT / "env.ci.yaml")
    for task, key in asked:
        layout.product(task, key)  # raises when pipeline.yaml does not name it
