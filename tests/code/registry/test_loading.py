"""Loading a version only when every file of it is as registered and as the baseline file
pinned; its compiled form served only when it agrees with its pipeline."""

import json
from pathlib import Path

import numpy as np
import pytest

from nbmlops import storage
from nbmlops.registry import compiled, promotion
from nbmlops.registry.errors import IntegrityError
from nbmlops.registry.loading import load_serving, load_version
from nbmlops.registry.runs import MANIFEST_TAG, MODEL_FILE
from nbmlops.registry.versions import version_details
from nbmlops.serving.rendezvous import ModelCache, check_rows
from nbmlops.training import candidates as models
from tests import helpers
from tests.code.registry.conftest import SPEC, artifact_folder, gate_rules, make_data, model_file

pytestmark = pytest.mark.both_stores


def _tamper(store, version) -> Path:
    """Append bytes to a version's model file in the artifact store; returns its path."""
    path = model_file(store, version)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes() + b"tampered")
    return path


def test_tampered_model_file_is_refused(store, builder):
    version = builder.register()
    assert load_version(store, version) is not None
    _tamper(store, version)
    with pytest.raises(IntegrityError, match=r"v1: model.pkl has sha256 .* refusing to load"):
        load_version(store, version)


def test_a_redirected_mlmodel_is_refused(store, builder):
    """MLmodel may name another pickle; with every file hashed, the edit itself is refused."""
    import pickle

    from sklearn.dummy import DummyClassifier

    version = builder.register()
    folder = artifact_folder(store, version)
    other = folder / "other.pkl"
    other.write_bytes(pickle.dumps(DummyClassifier()))
    with pytest.raises(IntegrityError, match=r"v1: other.pkl was added; refusing to load"):
        load_version(store, version)
    other.unlink()
    mlmodel = folder / "MLmodel"
    mlmodel.chmod(0o644)
    mlmodel.write_text(mlmodel.read_text().replace("pickled_model: model.pkl",
                                                   "pickled_model: other.pkl"))  # fmt: skip
    with pytest.raises(IntegrityError, match=r"v1: MLmodel has sha256 .*, registered"):
        load_version(store, version)


def test_a_version_from_before_manifests_is_checked_by_its_model_file(store, builder):
    version = builder.register()
    store.client().delete_model_version_tag(store.model_name, version, MANIFEST_TAG)
    assert load_version(store, version) is not None
    _tamper(store, version)
    with pytest.raises(IntegrityError, match=r"model.pkl has sha256"):
        load_version(store, version)


def test_a_version_is_served_compiled_and_a_compiled_form_that_disagrees_is_refused(
    store, builder, monkeypatch
):
    version = builder.register(candidates=("linear", "boosting"))
    model, form, note = load_serving(store, version)
    assert form is not None and note == ""
    run = store.client().get_run(version_details(store, version)["tags"]["run_id"])
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
    _, stored, _ = load_serving(store, wrong)
    assert np.allclose(loaded.model.predict_proba(sample),
                       load_version(store, wrong).predict_proba(sample))  # fmt: skip
    assert not np.allclose(stored.predict_proba(sample), loaded.model.predict_proba(sample))

    stored_file = next(artifact_folder(store, version).rglob(compiled.FILE))
    stored_file.chmod(0o644)
    stored_file.write_bytes(stored_file.read_bytes()[:-1] + b"x")
    with pytest.raises(IntegrityError, match=rf"extra_files/{compiled.FILE} has sha256"):
        load_serving(store, version)


def test_a_promoted_champion_is_pinned_by_the_baseline_file(store, builder, files):
    """A writer of the store who changes a champion's file and its recorded hashes together
    is caught by the hash of its manifest that the committed baseline holds."""
    baseline, gate_file = files
    version = builder.register()
    promotion.promote(store, baseline, gate_rules(gate_file))
    pinned = store.pinned_by(baseline)
    assert pinned.pins == ((version, storage.read_json(baseline)["manifest_sha256"]),)
    assert load_version(pinned, version) is not None
    path = _tamper(store, version)
    manifest = json.loads(version_details(store, version)["tags"][MANIFEST_TAG])
    manifest[MODEL_FILE] = storage.sha256_file(path)
    client = store.client()
    client.set_model_version_tag(store.model_name, version, "sha256", manifest["model.pkl"])
    client.set_model_version_tag(store.model_name, version, MANIFEST_TAG,
                                 json.dumps(manifest, sort_keys=True))  # fmt: skip
    assert load_version(store, version) is not None  # the store alone is fooled
    with pytest.raises(IntegrityError, match="not those the baseline file pinned"):
        load_version(pinned, version)
