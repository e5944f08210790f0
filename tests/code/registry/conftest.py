"""A real MLflow store in a temporary folder, with versions registered by the project's code."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nbmlops import storage
from nbmlops.registry import gates
from nbmlops.registry.runs import MODEL_FILE, log_candidates, register_challenger
from nbmlops.registry.store import Store
from nbmlops.spec import FeatureSpec
from nbmlops.training import candidates as models
from nbmlops.training import evaluation
from tests import helpers

SPEC = FeatureSpec("y", ["x1", "x2"], ["c"])
CONTEXT = {"data_sha256": "ab" * 32, "train_window": "w1", "holdout_window": "w2"}
GATES = "metrics:\n  roc_auc: {floor: 0.5, max_regression: 0.05, min_improvement: 0.005}\n"


def make_data(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    c = rng.choice(["a", "b"], n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(1.5 * x1 + (c == "a"))))).astype(int)
    return pd.DataFrame({"x1": x1, "x2": x2, "c": c, "y": y})


SERVER = "server"


def pytest_generate_tests(metafunc):
    """Tests marked `both_stores` run on the embedded store and on a real shared server, but
    for those marked `embedded_only` (sqlite's own behaviour)."""
    marked = metafunc.definition.get_closest_marker
    if "store" in metafunc.fixturenames and marked("both_stores") and not marked("embedded_only"):
        metafunc.parametrize("store", ["embedded", SERVER], indirect=True)


@pytest.fixture
def store(request, tmp_path, monkeypatch):
    """The embedded store in a temporary folder; with `both_stores`, also a model of its own
    on a real MLflow server backed by PostgreSQL (tests.conftest.registry_server)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    if getattr(request, "param", None) == SERVER:
        server = request.getfixturevalue("registry_server")
        return Store.from_params(
            {
                "tracking_uri": server.uri,
                "artifact_root": str(server.home / "artifacts"),  # the server's; tests look
                "model_name": f"test-model-{uuid.uuid4().hex[:12]}",
            }
        )
    return Store.from_params(
        {
            "tracking_uri": f"sqlite:///{tmp_path}/mlruns/mlflow.db",
            "artifact_root": str(tmp_path / "mlruns" / "artifacts"),
            "model_name": "test-model",
        }
    )


class Builder:
    """Trains candidates and registers the best exactly as the evaluate task does."""

    def __init__(self, store, folder):
        self.store, self.folder, self.count = store, folder, 0
        self.holdout = make_data(400, 99)

    def register(self, hyperparams: dict | None = None, candidates=("linear",)) -> str:
        return register_challenger(self.store, self.log(hyperparams, candidates), CONTEXT)

    def log(self, hyperparams: dict | None = None, candidates=("linear",)) -> dict:
        """Train and log the candidates; returns the best one's run."""
        self.count += 1
        train = make_data(800, self.count)
        trained = {}
        for name in candidates:
            hp = (hyperparams or {}).get(name, {})
            pipeline, seconds = models.fit(helpers.model(name, SPEC, **hp), train, SPEC)
            base = self.folder / f"build{self.count}" / name
            record = models.record(helpers.declared(name, **hp), seconds, {})
            models.save(pipeline, record, f"{base}.pkl", f"{base}.json")
            trained[f"train-{name}"] = {"model": f"{base}.pkl", "metrics": f"{base}.json"}
        result = evaluation.evaluate_candidates(trained, self.holdout, SPEC, "roc_auc")
        runs = log_candidates(self.store, result, CONTEXT, f"b{self.count}",
                              self.holdout[SPEC.columns])  # fmt: skip
        return runs[result.best]


@pytest.fixture
def builder(store, tmp_path):
    return Builder(store, tmp_path / "builds")


@pytest.fixture
def files(tmp_path):
    """A baseline file yet to be written and a gate file."""
    (tmp_path / "gates.yaml").write_text(GATES)
    return tmp_path / "baseline.json", tmp_path / "gates.yaml"


def gate_rules(path) -> dict:
    return gates.load_gates(path, "roc_auc")


def model_file(store, version) -> Path:
    """The model.pkl of a version's own artifacts, on the disk of the embedded store or of the
    server (whose files the `store` fixture's artifact_root names)."""
    from urllib.parse import unquote, urlparse

    client = store.client()
    registered = client.get_model_version(store.model_name, version)
    model_id = registered.source.removeprefix("models:/")  # the logged model it was made from
    location = client.get_logged_model(model_id).artifact_location
    if location.startswith("mlflow-artifacts:"):
        rel = urlparse(location).path.lstrip("/")
        folder = Path(store.artifact_root) / rel
    else:
        folder = Path(unquote(urlparse(location).path))
    (path,) = folder.rglob(MODEL_FILE)
    assert storage.sha256_file(path) == registered.tags["sha256"]
    return path


def artifact_folder(store, version) -> Path:
    """The folder of a version's own artifacts."""
    return model_file(store, version).parent
