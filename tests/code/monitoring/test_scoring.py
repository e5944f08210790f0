"""Scoring with a real MLflow store: the champion serves, the challenger shadows, a broken
champion hands its rows to the previous one, and files are scored in chunks as frames
are whole."""

import numpy as np
import pandas as pd
import pytest

from nbmlops import storage
from nbmlops.monitoring import scoring
from nbmlops.registry import promotion
from nbmlops.registry.loading import load_version
from nbmlops.registry.store import Store
from nbmlops.registry.versions import NO_HISTORY, set_champion
from nbmlops.training import evaluation
from tests.code.registry.conftest import SPEC, Builder, gate_rules, make_data, model_file

pytestmark = pytest.mark.both_stores


def _promote_two(store, builder, files):
    baseline, gate_file = files
    builder.register()
    promotion.promote(store, baseline, gate_rules(gate_file))
    builder.register()
    promotion.promote(store, baseline, gate_rules(gate_file), force=True)
    return builder.register()  # v3: the challenger


def test_broken_champion_falls_back_to_previous(store, builder, files):
    challenger = _promote_two(store, builder, files)
    path = model_file(store, "2")
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
        return Exploding() if version == "2" else load_version(store, version)

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
    promotion.promote(store, baseline, gate_rules(gate_file))
    assert scoring.champion_record_note(store, baseline) == (
        f"champion v{first}, the model {baseline.name} records"
    )
    fresh = Store.from_params({
        "tracking_uri": f"sqlite:///{tmp_path}/fresh/mlflow.db",
        "artifact_root": str(tmp_path / "fresh" / "artifacts"), "model_name": store.model_name,
    })  # fmt: skip
    other = Builder(fresh, tmp_path / "other")
    other.count = 5  # another model file, registered as this store's v1 too
    assert other.register() == first == "1"
    note = scoring.champion_record_note(fresh, baseline)
    assert "moved" not in note and NO_HISTORY in note and "acting champion" in note
    found, why, scored = evaluation.baseline_on_holdout(fresh, baseline, make_data(100, 4), SPEC)
    assert scored is None and found == storage.read_json(baseline)  # the committed figures
    assert why.endswith(f"this store does not hold it ({NO_HISTORY})")
    # an alias that did move is named
    second = builder.register({"linear": {"C": 0.01}})
    set_champion(store, second, [first, second])
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
        model = load_version(store, version)
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
    served = {v: load_version(store, v) for v in ("1", "2")}
    shadow = load_version(store, challenger)
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

    archived = pd.read_parquet(result.scored_file)
    assert (
        result.scored_file.parent == tmp_path / "archive"
        and not result.scored_file.stat().st_mode & 0o222
    )
    assert archived["x2"].dtype == float and archived["x2"].iloc[0] == holdout["x2"].iloc[0]
    assert archived["c"].iloc[230 + 410 : 230 + 510].isna().all()
    pd.testing.assert_frame_equal(archived[got.columns], got)
    pd.testing.assert_frame_equal(archived[SPEC.columns],
                                  inputs[SPEC.columns].astype({"x2": float}))  # fmt: skip
    assert not list((tmp_path / "archive").glob(".incoming.*"))


def test_archive_is_content_addressed_and_read_only(tmp_path):
    df = make_data(30, 1)
    first = scoring.keep_scored(df, tmp_path)
    again = scoring.keep_scored(df, tmp_path)
    assert first == again and len(list(tmp_path.iterdir())) == 1
    assert not first.stat().st_mode & 0o222
    assert scoring.keep_scored(make_data(30, 2), tmp_path) != first
