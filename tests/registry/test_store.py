"""The MLflow store: opening it and naming what is wrong with it, what a build logs and
registers, aliases and versions, and loading a version only when every file is as
registered."""

import json
from pathlib import Path

import numpy as np
import pytest

from nbmlops import storage
from nbmlops.registry import compiled, promotion
from nbmlops.registry import store as registry
from nbmlops.registry.store import IntegrityError, RegistryError
from nbmlops.serving.rendezvous import ModelCache, check_rows
from nbmlops.training import candidates as models
from tests import helpers
from tests.registry.conftest import SPEC, gate_rules, make_data, model_file

pytestmark = pytest.mark.both_stores


def test_build_logs_runs_and_registers_challenger_with_hash(store, builder):
    version = builder.register(candidates=("linear", "forest"))
    client = store.client()
    assert registry.alias_version(store, registry.CHALLENGER) == version == "1"
    assert registry.alias_version(store, registry.CHAMPION) is None
    details = registry.version_details(store, version)
    assert details["tags"]["sha256"] == storage.sha256_file(model_file(store, version))
    # the experiment is every project's on a shared server: this model's runs are tagged
    runs = client.search_runs([store.experiment_id(client)],
                              f"tags.{registry.MODEL_NAME_TAG} = '{store.model_name}'")  # fmt: skip
    assert sorted(r.data.params["model"] for r in runs) == ["forest", "linear"]
    run = client.get_run(details["run_id"])
    assert run.data.tags["data_sha256"] == "ab" * 32 and run.data.params["model"] in {
        "linear",
        "forest",
    }
    assert 0.5 < run.data.metrics["holdout_roc_auc"] <= 1


def test_environment_tags_name_commit_lock_and_python(tmp_path):
    from tests.conftest import PROJECT

    tags = registry.environment_tags(PROJECT, PROJECT / "requirements.lock")
    assert len(tags["git_commit"]) == 40 and tags["git_dirty"] in {"True", "False"}
    assert tags["lock_sha256"] == storage.sha256_file(PROJECT / "requirements.lock")
    assert tags["python"].startswith("3.11")
    outside = registry.environment_tags(tmp_path, tmp_path / "none.lock")
    assert outside["git_commit"] == "unknown" and outside["lock_sha256"] == "missing"


def _tamper(store, version) -> Path:
    """Append bytes to a version's model file in the artifact store; returns its path."""
    path = model_file(store, version)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes() + b"tampered")
    return path


def test_tampered_model_file_is_refused(store, builder):
    version = builder.register()
    assert registry.load_version(store, version) is not None
    _tamper(store, version)
    with pytest.raises(IntegrityError, match=r"v1: model.pkl has sha256 .* refusing to load"):
        registry.load_version(store, version)


def _artifact_folder(store, version) -> Path:
    return model_file(store, version).parent


def test_a_redirected_mlmodel_is_refused(store, builder):
    """MLmodel may name another pickle; with every file hashed, the edit itself is refused."""
    import pickle

    from sklearn.dummy import DummyClassifier

    version = builder.register()
    folder = _artifact_folder(store, version)
    other = folder / "other.pkl"
    other.write_bytes(pickle.dumps(DummyClassifier()))
    with pytest.raises(IntegrityError, match=r"v1: other.pkl was added; refusing to load"):
        registry.load_version(store, version)
    other.unlink()
    mlmodel = folder / "MLmodel"
    mlmodel.chmod(0o644)
    mlmodel.write_text(mlmodel.read_text().replace("pickled_model: model.pkl",
                                                   "pickled_model: other.pkl"))  # fmt: skip
    with pytest.raises(IntegrityError, match=r"v1: MLmodel has sha256 .*, registered"):
        registry.load_version(store, version)


def test_every_file_of_a_version_is_in_its_manifest(store, builder):
    version = builder.register()
    tags = registry.version_details(store, version)["tags"]
    manifest = json.loads(tags[registry.MANIFEST_TAG])
    folder = _artifact_folder(store, version)
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert set(manifest) == on_disk and {"MLmodel", registry.MODEL_FILE} <= on_disk
    assert f"extra_files/{compiled.FILE}" in on_disk  # the compiled form is checked like the rest
    assert manifest[registry.MODEL_FILE] == tags["sha256"]
    assert registry.load_version(store, version).predict_proba(builder.holdout[SPEC.columns]).shape


def test_a_version_from_before_manifests_is_checked_by_its_model_file(store, builder):
    version = builder.register()
    store.client().delete_model_version_tag(store.model_name, version, registry.MANIFEST_TAG)
    assert registry.load_version(store, version) is not None
    _tamper(store, version)
    with pytest.raises(IntegrityError, match=r"model.pkl has sha256"):
        registry.load_version(store, version)


def test_a_version_is_served_compiled_and_a_compiled_form_that_disagrees_is_refused(
    store, builder, monkeypatch
):
    version = builder.register(candidates=("linear", "boosting"))
    model, form, note = registry.load_serving(store, version)
    assert form is not None and note == ""
    run = store.client().get_run(registry.version_details(store, version)["tags"]["run_id"])
    assert run.data.tags["compiled"] == form.kernel
    sample = check_rows(SPEC.columns, builder.holdout[SPEC.columns].head(64))
    assert ModelCache(store, sample).get(version).form == f"compiled ({form.kernel})"

    # a compiled form of another model, stored (and hashed) as if it were this one's
    other = models.fit(helpers.model("linear", SPEC, C=0.001), make_data(300, 42), SPEC)[0]
    real = compiled.compile_pipeline
    monkeypatch.setattr(compiled, "compile_pipeline", lambda pipeline, rows: real(other, rows))
    wrong = builder.register()
    loaded = ModelCache(store, sample).get(wrong)
    assert loaded.form in ("fused", "pipeline")
    assert "compiled form differs from the pipeline" in loaded.note
    _, stored, _ = registry.load_serving(store, wrong)
    assert np.allclose(loaded.model.predict_proba(sample),
                       registry.load_version(store, wrong).predict_proba(sample))  # fmt: skip
    assert not np.allclose(stored.predict_proba(sample), loaded.model.predict_proba(sample))

    stored_file = next(_artifact_folder(store, version).rglob(compiled.FILE))
    stored_file.chmod(0o644)
    stored_file.write_bytes(stored_file.read_bytes()[:-1] + b"x")
    with pytest.raises(IntegrityError, match=rf"extra_files/{compiled.FILE} has sha256"):
        registry.load_serving(store, version)


def test_tracking_uri_from_environment_wins(tmp_path, monkeypatch, builder, store):
    other = f"sqlite:///{tmp_path}/server/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", other)
    switched = registry.Store.from_params(
        {
            "tracking_uri": store.tracking_uri,
            "artifact_root": store.artifact_root,
            "model_name": store.model_name,
        }
    )
    assert switched.tracking_uri == other
    builder.store = switched
    builder.register()
    assert len(registry.list_versions(switched)) == 1
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert (tmp_path / "server" / "mlflow.db").is_file()
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()


def test_using_a_store_does_not_export_its_uri(store, monkeypatch):
    import os

    store.client()
    assert "MLFLOW_TRACKING_URI" not in os.environ  # builds started later must not inherit it
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere.db")
    store.client()
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:////elsewhere.db"


HOLD_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
"""


@pytest.mark.embedded_only
def test_locked_store_is_named_and_registers_nothing(store, builder):
    import subprocess
    import sys

    run = builder.log()
    db = store.tracking_uri.removeprefix("sqlite:///")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, db], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RegistryError) as caught:
            registry.register_challenger(store, run, {"candidate": "logreg"})
    finally:
        holder.communicate("\n", timeout=30)
    message = str(caught.value)
    assert f"MLflow store {store.tracking_uri} is locked by another process" in message
    assert "retry when the other process has finished" in message
    assert registry.list_versions(store).empty
    assert registry.alias_version(store, registry.CHALLENGER) is None
    assert registry.register_challenger(store, run, {"candidate": "logreg"}) == "1"


def test_unreachable_server_fails_fast_with_a_hint(tmp_path):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = registry.Store(f"http://127.0.0.1:{port}", str(tmp_path), "m")
    with pytest.raises(RegistryError, match=rf"server http://127.0.0.1:{port} cannot be reached"):
        store.client()  # probed first: MLflow's own retries would go on for minutes


def test_store_path_that_cannot_exist_is_named(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    store = registry.Store(f"sqlite:///{tmp_path}/file/mlflow.db", str(tmp_path), "m")
    with pytest.raises(RegistryError, match=r"its folder .*/file cannot be created"):
        store.client()


def test_an_identical_model_file_is_not_registered_twice(store, builder):
    run = builder.log()
    first = registry.register_challenger(store, run, {"candidate": "logreg"})
    other = builder.register()  # a different model in between
    assert registry.alias_version(store, registry.CHALLENGER) == other
    again = registry.register_challenger(store, run, {"candidate": "logreg"})
    assert again == first and registry.alias_version(store, registry.CHALLENGER) == first
    assert sorted(registry.list_versions(store)["version"]) == [1, 2]
    assert registry.version_with_hash(store, run["sha256"]) == first
    assert registry.version_with_hash(store, "0" * 64) is None


def test_a_champion_history_changed_meanwhile_is_not_overwritten(store, builder, files):
    baseline, gate_file = files
    builder.register()
    builder.register()
    read_before = registry.champion_history(store)
    promotion.promote(store, baseline, gate_rules(gate_file), "1", force=True)  # lands in between
    with pytest.raises(RegistryError, match="the champion history changed while this ran"):
        registry.set_champion(store, "2", read_before + ["2"], expected=read_before)
    assert registry.champion_history(store) == ["1"]
    assert registry.alias_version(store, registry.CHAMPION) == "1"


@pytest.mark.parametrize(("content", "words"), [
    (b"", "is an empty file, not a registry"),
    (b"PK\x03\x04 not a database", "is not a SQLite database"),
])  # fmt: skip
def test_an_empty_or_damaged_store_is_named_and_left_as_it_is(tmp_path, content, words):
    db = tmp_path / "mlruns" / "mlflow.db"
    db.parent.mkdir()
    db.write_bytes(content)
    damaged = registry.Store.from_params({"tracking_uri": f"sqlite:///{db}",
                                          "artifact_root": str(tmp_path / "artifacts"),
                                          "model_name": "m"})  # fmt: skip
    with pytest.raises(RegistryError, match=words):
        damaged.client()
    assert db.read_bytes() == content  # never re-initialised


def test_a_promoted_champion_is_pinned_by_the_baseline_file(store, builder, files):
    """A writer of the store who changes a champion's file and its recorded hashes together
    is caught by the hash of its manifest that the committed baseline holds."""
    baseline, gate_file = files
    version = builder.register()
    promotion.promote(store, baseline, gate_rules(gate_file))
    pinned = store.pinned_by(baseline)
    assert pinned.pins == ((version, storage.read_json(baseline)["manifest_sha256"]),)
    assert registry.load_version(pinned, version) is not None
    path = _tamper(store, version)
    manifest = json.loads(registry.version_details(store, version)["tags"][registry.MANIFEST_TAG])
    manifest[registry.MODEL_FILE] = storage.sha256_file(path)
    client = store.client()
    client.set_model_version_tag(store.model_name, version, "sha256", manifest["model.pkl"])
    client.set_model_version_tag(store.model_name, version, registry.MANIFEST_TAG,
                                 json.dumps(manifest, sort_keys=True))  # fmt: skip
    assert registry.load_version(store, version) is not None  # the store alone is fooled
    with pytest.raises(IntegrityError, match="not those the baseline file pinned"):
        registry.load_version(pinned, version)
