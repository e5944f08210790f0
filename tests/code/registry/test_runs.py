"""What a build logs and registers: a run per candidate, the environment it came from, the
best as the challenger with the hash of every file, and an identical model file once."""

import json

import pytest

from nbmlops import storage
from nbmlops.registry import compiled
from nbmlops.registry.loading import load_version
from nbmlops.registry.runs import (
    MANIFEST_TAG,
    MODEL_FILE,
    MODEL_NAME_TAG,
    environment_tags,
    register_challenger,
    version_with_hash,
)
from nbmlops.registry.versions import (
    CHALLENGER,
    CHAMPION,
    alias_version,
    list_versions,
    version_details,
)
from tests.code.registry.conftest import SPEC, artifact_folder, model_file

pytestmark = pytest.mark.both_stores


def test_build_logs_runs_and_registers_challenger_with_hash(store, builder):
    version = builder.register(candidates=("linear", "forest"))
    client = store.client()
    assert alias_version(store, CHALLENGER) == version == "1"
    assert alias_version(store, CHAMPION) is None
    details = version_details(store, version)
    assert details["tags"]["sha256"] == storage.sha256_file(model_file(store, version))
    # the experiment is every project's on a shared server: this model's runs are tagged
    runs = client.search_runs([store.experiment_id(client)],
                              f"tags.{MODEL_NAME_TAG} = '{store.model_name}'")  # fmt: skip
    assert sorted(r.data.params["model"] for r in runs) == ["forest", "linear"]
    run = client.get_run(details["run_id"])
    assert run.data.tags["data_sha256"] == "ab" * 32 and run.data.params["model"] in {
        "linear",
        "forest",
    }
    assert 0.5 < run.data.metrics["holdout_roc_auc"] <= 1


def test_environment_tags_name_commit_lock_and_python(tmp_path):
    from tests.conftest import PROJECT

    tags = environment_tags(PROJECT, PROJECT / "requirements.lock")
    assert len(tags["git_commit"]) == 40 and tags["git_dirty"] in {"True", "False"}
    assert tags["lock_sha256"] == storage.sha256_file(PROJECT / "requirements.lock")
    assert tags["python"].startswith("3.11")
    outside = environment_tags(tmp_path, tmp_path / "none.lock")
    assert outside["git_commit"] == "unknown" and outside["lock_sha256"] == "missing"


def test_every_file_of_a_version_is_in_its_manifest(store, builder):
    version = builder.register()
    tags = version_details(store, version)["tags"]
    manifest = json.loads(tags[MANIFEST_TAG])
    folder = artifact_folder(store, version)
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert set(manifest) == on_disk and {"MLmodel", MODEL_FILE} <= on_disk
    assert f"extra_files/{compiled.FILE}" in on_disk  # the compiled form is checked like the rest
    assert manifest[MODEL_FILE] == tags["sha256"]
    assert load_version(store, version).predict_proba(builder.holdout[SPEC.columns]).shape


def test_an_identical_model_file_is_not_registered_twice(store, builder):
    run = builder.log()
    first = register_challenger(store, run, {"candidate": "logreg"})
    other = builder.register()  # a different model in between
    assert alias_version(store, CHALLENGER) == other
    again = register_challenger(store, run, {"candidate": "logreg"})
    assert again == first and alias_version(store, CHALLENGER) == first
    assert sorted(list_versions(store)["version"]) == [1, 2]
    assert version_with_hash(store, run["sha256"]) == first
    assert version_with_hash(store, "0" * 64) is None
