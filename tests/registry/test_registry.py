"""Tracking, registry, promotion, rollback, integrity and fallback, against a real MLflow store."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nbmlops import storage
from nbmlops.monitoring import scoring
from nbmlops.registry import compiled, gates, promotion
from nbmlops.registry import store as registry
from nbmlops.registry.store import IntegrityError, RegistryError
from nbmlops.serving.rendezvous import ModelCache, check_rows
from nbmlops.training import candidates as models
from nbmlops.training import evaluation
from tests import helpers
from tests.registry.conftest import SPEC, Builder, make_data

pytestmark = pytest.mark.both_stores

GATES = "metrics:\n  roc_auc: {floor: 0.5, max_regression: 0.05, min_improvement: 0.005}\n"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "gates.yaml").write_text(GATES)
    return tmp_path / "baseline.json", tmp_path / "gates.yaml"


def _gates(path) -> dict:
    return gates.load_gates(path, "roc_auc")


def _model_file(store, version) -> Path:
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
    (path,) = folder.rglob(registry.MODEL_FILE)
    assert storage.sha256_file(path) == registered.tags["sha256"]
    return path


def test_build_logs_runs_and_registers_challenger_with_hash(store, builder):
    version = builder.register(candidates=("linear", "forest"))
    client = store.client()
    assert registry.alias_version(store, registry.CHALLENGER) == version == "1"
    assert registry.alias_version(store, registry.CHAMPION) is None
    details = registry.version_details(store, version)
    assert details["tags"]["sha256"] == storage.sha256_file(_model_file(store, version))
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


def test_promote_first_challenger_writes_baseline(store, builder, files):
    baseline, gate_file = files
    version = builder.register()
    promoted, result = promotion.promote(store, baseline, _gates(gate_file))
    assert promoted == version and result.promotable
    assert registry.alias_version(store, registry.CHAMPION) == version
    content = storage.read_json(baseline)
    assert content["version"] == version
    assert content["metrics"]["roc_auc"] == pytest.approx(
        registry.version_metrics(store, version)["roc_auc"], abs=1e-6
    )


def test_promotion_refused_without_improvement_leaves_everything(store, builder, files):
    baseline, gate_file = files
    builder.register()
    promotion.promote(store, baseline, _gates(gate_file))
    before = baseline.read_bytes()
    builder.register(hyperparams={"linear": {"C": 1e-4}})  # a weaker model
    with pytest.raises(gates.GateError, match="v2 is not promoted") as err:
        promotion.promote(store, baseline, _gates(gate_file))
    assert "roc_auc" in str(err.value)
    assert registry.alias_version(store, registry.CHAMPION) == "1"
    assert registry.alias_version(store, registry.CHALLENGER) == "2"
    assert baseline.read_bytes() == before


def test_force_then_rollback(store, builder, files):
    baseline, gate_file = files
    builder.register()
    promotion.promote(store, baseline, _gates(gate_file))
    first = storage.read_json(baseline)
    builder.register()
    promotion.promote(store, baseline, _gates(gate_file), force=True)
    assert registry.champion_history(store) == ["1", "2"]
    assert storage.read_json(baseline)["version"] == "2"
    assert promotion.rollback(store, baseline) == ("2", "1")
    assert registry.alias_version(store, registry.CHAMPION) == "1"
    assert storage.read_json(baseline)["metrics"] == first["metrics"]
    with pytest.raises(RegistryError, match="no previous champion"):
        promotion.rollback(store, baseline)
    assert len(registry.list_versions(store)) == 2  # versions are never deleted


def test_promote_without_challenger_or_twice(store, builder, files):
    baseline, gate_file = files
    with pytest.raises(RegistryError, match="has no challenger"):
        promotion.promote(store, baseline, _gates(gate_file))
    builder.register()
    promotion.promote(store, baseline, _gates(gate_file))
    with pytest.raises(RegistryError, match="already the champion"):
        promotion.promote(store, baseline, _gates(gate_file))


def _tamper(store, version) -> Path:
    """Append bytes to a version's model file in the artifact store; returns its path."""
    path = _model_file(store, version)
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
    return _model_file(store, version).parent


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


def _promote_two(store, builder, files):
    baseline, gate_file = files
    builder.register()
    promotion.promote(store, baseline, _gates(gate_file))
    builder.register()
    promotion.promote(store, baseline, _gates(gate_file), force=True)
    return builder.register()  # v3: the challenger


def test_broken_champion_falls_back_to_previous(store, builder, files):
    challenger = _promote_two(store, builder, files)
    path = _model_file(store, "2")
    path.chmod(0o644)
    path.write_bytes(b"not a model")
    windows = {"reference": make_data(200, 7), "b1": make_data(200, 8)}
    result = scoring.score(store, challenger, windows, SPEC)
    assert set(result.scores["served_version"]) == {"1"}
    assert set(result.scores["served_role"]) == {"fallback"}
    assert result.scores["challenger_proba"].notna().all()
    assert any("champion v2 cannot be loaded" in e for e in result.events)
    summary = scoring.summarize(result.scores, SPEC)
    assert list(summary["served_by"]) == ["v1", "v1"]


def test_champion_failing_while_scoring_falls_back_per_batch(store, builder, files):
    challenger = _promote_two(store, builder, files)

    class Exploding:
        def predict_proba(self, X):
            raise RuntimeError("out of memory")

    def loader(version):
        return Exploding() if version == "2" else registry.load_version(store, version)

    windows = {"reference": make_data(100, 7), "b1": make_data(100, 8)}
    result = scoring.score(store, challenger, windows, SPEC, loader=loader)
    assert set(result.scores["served_version"]) == {"1"}
    assert "reference: champion v2 failed while scoring: out of memory" in result.events
    assert "reference: falling back to v1" in result.events


def test_healthy_champion_serves_and_challenger_shadows(store, builder, files):
    challenger = _promote_two(store, builder, files)
    windows = {"reference": make_data(300, 7)}
    result = scoring.score(store, challenger, windows, SPEC)
    assert set(result.scores["served_role"]) == {"champion"} and not result.events
    summary = scoring.summarize(result.scores, SPEC).iloc[0]
    assert 0 <= summary["disagreement"] <= 1 and summary["served_by"] == "v2"


def test_no_champion_yet_the_challenger_acts(store, builder):
    version = builder.register()
    result = scoring.score(store, version, {"reference": make_data(50, 3)}, SPEC)
    assert set(result.scores["served_role"]) == {"acting champion (no champion yet)"}


def test_the_committed_champion_is_found_by_its_model_file_not_its_number(
    store, builder, files, tmp_path
):
    """A fresh store (CI without a shared registry) numbers its own versions: the baseline's
    v1 is not this store's v1. Nothing is said to have moved unless an alias moved."""
    baseline, gate_file = files
    first = builder.register()
    promotion.promote(store, baseline, _gates(gate_file))
    assert scoring.champion_record_note(store, baseline) == (
        f"champion v{first}, the model {baseline.name} records"
    )
    fresh = registry.Store.from_params({
        "tracking_uri": f"sqlite:///{tmp_path}/fresh/mlflow.db",
        "artifact_root": str(tmp_path / "fresh" / "artifacts"), "model_name": store.model_name,
    })  # fmt: skip
    other = Builder(fresh, tmp_path / "other")
    other.count = 5  # another model file, registered as this store's v1 too
    assert other.register() == first == "1"
    note = scoring.champion_record_note(fresh, baseline)
    assert "moved" not in note and registry.NO_HISTORY in note and "acting champion" in note
    found, why, scored = evaluation.baseline_on_holdout(fresh, baseline, make_data(100, 4), SPEC)
    assert scored is None and found == storage.read_json(baseline)  # the committed figures
    assert why.endswith(f"this store does not hold it ({registry.NO_HISTORY})")
    # an alias that did move is named
    second = builder.register({"linear": {"C": 0.01}})
    registry.set_champion(store, second, [first, second])
    assert "the alias was moved without `make promote`" in scoring.champion_record_note(
        store, baseline
    )


def test_files_scored_in_chunks_as_frames_are_scored_at_once(store, builder, files, tmp_path):
    """Scoring files piece by piece writes the scores, the summary and the archive that scoring
    the same windows whole gives; a champion that fails part-way hands the rest to the previous
    one, and each row says who answered it."""
    challenger = _promote_two(store, builder, files)
    holdout, b1, b2 = make_data(230, 7), make_data(410, 8), make_data(170, 9)
    b2["y"] = np.nan  # not labelled yet
    b2.loc[:99, "c"] = None  # a category column empty in a whole chunk
    holdout["x2"] = holdout["x2"].round().astype(int)  # whole numbers here, fractions in batches
    batches = pd.concat([b1.assign(_batch="b1"), b2.assign(_batch="b2")], ignore_index=True)
    holdout.to_parquet(tmp_path / "holdout.parquet", row_group_size=100)
    batches.to_parquet(tmp_path / "batches.parquet", row_group_size=100)
    calls = []

    class FailsOnItsFifthCall:
        def __init__(self, model):
            self.model = model

        def predict_proba(self, X):
            calls.append(len(X))
            if len(calls) >= 5:
                raise RuntimeError("out of memory")
            return self.model.predict_proba(X)

    def loader(version):
        model = registry.load_version(store, version)
        return FailsOnItsFifthCall(model) if version == "2" else model

    result = scoring.score_files(
        store, challenger, [("reference", tmp_path / "holdout.parquet"),
                            (None, tmp_path / "batches.parquet")],
        SPEC, tmp_path / "scores.parquet", tmp_path / "archive", chunk_rows=64, loader=loader,
    )  # fmt: skip
    got = pd.read_parquet(tmp_path / "scores.parquet")
    assert len(got) == 810 and calls == [64, 64, 64, 38, 64]  # 230 = 64 + 64 + 64 + 38
    assert "b1: champion v2 failed while scoring: out of memory" in result.events
    assert list(got["served_version"].iloc[[0, 229, 230, 809]]) == ["2", "2", "1", "1"]
    assert list(result.summary["served_by"]) == ["v2", "v1", "v1"]

    # the same rows, whole, by the model that answered each
    served = {v: registry.load_version(store, v) for v in ("1", "2")}
    shadow = registry.load_version(store, challenger)
    inputs = pd.concat([holdout, b1, b2], ignore_index=True)
    for version, model in served.items():
        rows = got["served_version"] == version
        expected = model.predict_proba(inputs.loc[rows, SPEC.columns])[:, 1]
        np.testing.assert_allclose(got.loc[rows, "served_proba"], expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got["challenger_proba"],
                               shadow.predict_proba(inputs[SPEC.columns])[:, 1], rtol=0, atol=1e-12)  # fmt: skip
    assert got["y"].iloc[:640].tolist() == inputs["y"].iloc[:640].astype(float).tolist()
    assert got["y"].iloc[640:].isna().all()
    pd.testing.assert_frame_equal(result.summary, scoring.summarize(got, SPEC))
    assert np.isnan(result.summary["served_roc_auc"].iloc[2])  # no labels: no metric

    archived = pd.read_parquet(result.archive)
    assert (
        result.archive.parent == tmp_path / "archive" and not result.archive.stat().st_mode & 0o222
    )
    assert archived["x2"].dtype == float and archived["x2"].iloc[0] == holdout["x2"].iloc[0]
    assert archived["c"].iloc[230 + 410 : 230 + 510].isna().all()
    pd.testing.assert_frame_equal(archived[got.columns], got)
    pd.testing.assert_frame_equal(archived[SPEC.columns],
                                  inputs[SPEC.columns].astype({"x2": float}))  # fmt: skip
    assert not list((tmp_path / "archive").glob(".incoming.*"))


def test_archive_is_content_addressed_and_read_only(tmp_path):
    df = make_data(30, 1)
    first = scoring.archive(df, tmp_path)
    again = scoring.archive(df, tmp_path)
    assert first == again and len(list(tmp_path.iterdir())) == 1
    assert not first.stat().st_mode & 0o222
    assert scoring.archive(make_data(30, 2), tmp_path) != first


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


def test_model_cards_for_every_version(store, builder, files, tmp_path):
    from nbmlops.registry import cards

    baseline, gate_file = files
    builder.register()
    promotion.promote(store, baseline, _gates(gate_file))
    builder.register()
    for version in ("1", "2"):  # evidently's report of each, its scripts inline
        run = registry.version_details(store, version)["run_id"]
        store.client().log_text(run, f"<html><head></head><body><script>{'x' * 60_000}</script>"
                                     f"<p>v{version}</p></body>", "reports/performance.html")  # fmt: skip
    written = cards.write_cards(store, tmp_path / "cards", _gates(gate_file), str(baseline))
    assert sorted(written) == ["1", "2"]
    page = written["1"].read_text()
    sha = registry.version_details(store, "1")["tags"]["sha256"]
    assert sha in page and "champion" in page and "w1" in page
    reports = sorted((tmp_path / "cards").glob("v*-performance.html"))
    assert len(reports) == 2
    for card in reports:  # evidently's scripts, once beside the cards
        refs = re.findall(r'(?:src|href)="([^"]*assets/[^"]+)"', card.read_text())
        assert refs and all((card.parent / ref).is_file() for ref in refs), (card, refs)
    assert len(list((tmp_path / "cards" / "assets").iterdir())) == 1
    markdown = (tmp_path / "cards" / "v2.md").read_text()
    assert markdown.startswith(f"# Model card: {store.model_name} v2")
    assert re.search(r"\| roc_auc +\|", markdown)


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


def test_a_candidate_file_changed_after_training_is_refused(tmp_path):
    import pickle

    from sklearn.dummy import DummyClassifier

    from nbmlops.training import candidates, evaluation

    pipeline, _ = candidates.fit(helpers.model("linear", SPEC), make_data(300, 1), SPEC)
    model_file, record = tmp_path / "linear.pkl", tmp_path / "linear.json"
    candidates.save(pipeline, {"model": "linear", "hyperparams": {}}, model_file, record)
    trained = {"train-linear": {"model": str(model_file), "metrics": str(record)}}
    holdout = make_data(200, 2)
    assert evaluation.evaluate_candidates(trained, holdout, SPEC, "roc_auc").best == "linear"
    model_file.write_bytes(pickle.dumps(DummyClassifier().fit(holdout[SPEC.columns], holdout["y"])))
    with pytest.raises(IntegrityError, match=r"linear.pkl: sha256 .* its metrics file records"):
        evaluation.evaluate_candidates(trained, holdout, SPEC, "roc_auc")


def _env_file(store, files, tmp_path, wait: float = 0) -> Path:
    baseline, gate_file = files
    env = tmp_path / "env.promote.yaml"
    env.write_text(json.dumps({
        "products": str(tmp_path / "products"), "build_lock_wait": wait,
        "mlflow": {"tracking_uri": store.tracking_uri, "artifact_root": store.artifact_root,
                   "model_name": store.model_name},
        "baseline": str(baseline), "gates": str(gate_file), "selection_metric": "roc_auc"}))  # fmt: skip
    return env


def _models_cli(env: Path, *args: str):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "nbmlops.registry.cli", "--env", str(env),
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_a_promotion_waits_for_or_stops_at_the_projects_lock(store, builder, files, tmp_path):
    from nbmlops.locking import LOCK_FILE, ProjectLock

    builder.register()
    builder.register()
    env = _env_file(store, files, tmp_path)
    with ProjectLock(tmp_path / "products" / LOCK_FILE, what="build"):
        refused = _models_cli(env, "promote", "--force")
        _, err = refused.communicate(timeout=120)
    assert refused.returncode == 1 and "another build of this project is running" in err
    assert registry.alias_version(store, registry.CHAMPION) is None
    assert not files[0].exists()  # no baseline written


def test_two_promotions_at_once_leave_alias_history_and_baseline_agreeing(store, builder, files,
                                                                          tmp_path):  # fmt: skip
    for _ in range(3):
        builder.register()
    env = _env_file(store, files, tmp_path, wait=60)
    both = [_models_cli(env, "promote", version, "--force") for version in ("2", "3")]
    outcomes = [(p.wait(120), p.communicate()[1]) for p in both]
    assert [code for code, _ in outcomes] == [0, 0], outcomes  # one waited for the other
    history = registry.champion_history(store)
    assert sorted(history) == ["2", "3"]
    assert registry.alias_version(store, registry.CHAMPION) == history[-1]
    assert storage.read_json(files[0])["version"] == history[-1]


def test_a_champion_history_changed_meanwhile_is_not_overwritten(store, builder, files):
    baseline, gate_file = files
    builder.register()
    builder.register()
    read_before = registry.champion_history(store)
    promotion.promote(store, baseline, _gates(gate_file), "1", force=True)  # lands in between
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
    promotion.promote(store, baseline, _gates(gate_file))
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


def test_promotion_follows_the_evidence_on_the_rows_both_models_scored(store, builder, files):
    """A challenger the paired evidence shows worse is refused (with the evidence in the
    message) unless forced; one that wins on the same rows is promoted."""
    import numpy as np

    from nbmlops.registry import evidence

    baseline, gate_file = files
    for _ in range(3):
        builder.register()
    promotion.promote(store, baseline, _gates(gate_file), "1", force=True)
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 3000)
    signal = y + rng.normal(0, 0.8, len(y))
    good, poor = (
        1 / (1 + np.exp(-signal)),
        1 / (1 + np.exp(-(0.3 * signal + rng.normal(size=len(y))))),
    )
    rules = _gates(gate_file)
    worse = evidence.compare(y, good, poor, rules, "shadow scoring", ["2024-05"])
    assert worse.worse and not worse.promotable and worse.difference.high < 0
    with pytest.raises(gates.GateError, match="the evidence shows it worse") as refused:
        promotion.promote(store, baseline, _gates(gate_file), "2", evidence=worse)
    assert "DeLong, paired" in str(refused.value) and "3,000 rows" in str(refused.value)
    assert registry.alias_version(store, registry.CHAMPION) == "1"
    assert storage.read_json(baseline)["version"] == "1"  # nothing moved
    promotion.promote(store, baseline, _gates(gate_file), "2", force=True, evidence=worse)
    assert registry.alias_version(store, registry.CHAMPION) == "2"
    better = evidence.compare(y, poor, good, rules, "shadow scoring", ["2024-05"])
    assert better.promotable and better.difference.low > 0
    held_out = gates.GateResult(better.gate.table, True, True)  # the build's own gate
    promotion.promote(store, baseline, _gates(gate_file), "3", evidence=better, held_out=held_out)
    assert registry.champion_history(store) == ["1", "2", "3"]
    assert storage.read_json(baseline)["version"] == "3"
    # evidence from two sources: one showing it worse is enough to refuse
    builder.register()
    with pytest.raises(gates.GateError, match="the evidence shows it worse"):
        promotion.promote(store, baseline, _gates(gate_file), "4", evidence=[better, worse],
                          held_out=held_out)  # fmt: skip
    none = evidence.compare(y[:10] * 0, good[:10], poor[:10], rules, "shadow", [])
    assert none.gate is None and "not enough labelled rows" in str(none)


@pytest.mark.embedded_only
def test_a_window_held_out_on_the_run_alone_is_found_by_every_reader(store, builder, files,
                                                                     tmp_path, monkeypatch):  # fmt: skip
    """A version whose held-out window is only on its run's tags (registered before versions
    carried it) is held out there for the shadow evidence's window, the evaluate task's
    champion on these rows and `make retrain`'s clock alike."""
    from types import SimpleNamespace

    from nbmlops.commands import retrain
    from nbmlops.registry import evidence
    from nbmlops.settings import RetrainPolicy
    from nbmlops.spec import PERIOD

    baseline, gate_file = files
    version = builder.register()
    client = store.client()
    client.delete_model_version_tag(store.model_name, version, evidence.HOLDOUT_TAG)
    client.set_tag(registry.version_details(store, version)["run_id"], evidence.HOLDOUT_TAG,
                   "2024-03")  # fmt: skip
    promotion.promote(store, baseline, _gates(gate_file))
    details = registry.version_details(store, version)
    assert evidence.HOLDOUT_TAG not in details["tags"]
    assert evidence.held_out_window(details) == "2024-03"  # lastbuild.last_build_evidence's windows
    holdout = make_data(100, 4).assign(**{PERIOD: "2024-03"})
    _, why, _ = evaluation.baseline_on_holdout(store, baseline, holdout, SPEC)
    assert why == f"v{version}, the champion, as committed: held out on these periods"
    storage.write_json(tmp_path / "tests.json", {"batches": []})
    layout = SimpleNamespace(product=lambda task, key: tmp_path / "tests.json")
    monkeypatch.setattr(retrain, "labelled_periods", lambda _: ["2024-03", "2024-04", "2024-05"])
    due = retrain.is_due(layout, store, RetrainPolicy(every=1))
    assert due.due and "was held out on 2024-03" in str(due) and "1 labelled period" in str(due)
