"""Who runs a notebook: a build writes its products, a person in Lab a scratch folder."""

from __future__ import annotations

from pathlib import Path

from nbmlops import session
from nbmlops.registry.store import Store


def test_a_build_writes_where_its_parameters_say(monkeypatch):
    monkeypatch.setenv(session.BUILD, "1")
    product = {"nb": "/p/products/ci/notebooks/evaluate.ipynb", "best": "/p/products/ci/best.json"}
    assert session.outputs(product, "evaluate") is product


def test_a_person_writes_to_a_scratch_folder_the_run_names(monkeypatch, capsys):
    monkeypatch.delenv(session.BUILD, raising=False)
    monkeypatch.delenv(session.WRITE, raising=False)
    product = {"nb": "/p/products/ci/notebooks/evaluate.ipynb", "best": "/p/products/ci/best.json",
               "batches": "/p/reports/ci/monitoring/batches"}  # fmt: skip
    scratch = session.outputs(product, "evaluate")
    folder = Path(scratch["best"]).parent
    assert folder.is_dir() and folder.name.startswith("nbmlops-evaluate-")
    assert {k: Path(v).name for k, v in scratch.items()} == {k: Path(v).name
                                                             for k, v in product.items()}  # fmt: skip
    assert {Path(v).parent for v in scratch.values()} == {folder}
    assert f"evaluate writes to {folder}" in capsys.readouterr().out
    store = Store("sqlite:////p/mlruns/mlflow.db", "/p/mlruns/artifacts", "churn")
    scratch_store = session.registry(store, scratch)
    assert scratch_store.tracking_uri == f"sqlite:///{folder}/mlruns/mlflow.db"
    assert scratch_store.model_name == "churn"
    # the raw snapshots and the scored rows' archive: beside the scratch products too
    assert session.folder("/p/data/raw/ci", scratch) == str(folder / "ci")
    monkeypatch.setenv(session.WRITE, "1")  # the person asks to write as the build does
    assert session.outputs(product, "evaluate") is product
    assert session.registry(store, product) is store
    assert session.folder("/p/data/raw/ci", product) == "/p/data/raw/ci"
