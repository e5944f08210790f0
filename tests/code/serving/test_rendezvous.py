"""The parts of the scoring service that decide: request contract, breaker, batcher, router,
registry view, archive. Models here are small fitted scikit-learn pipelines."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from nbmlops.serving.archive import Archive, ArchiveSettings
from nbmlops.serving.fused import Fused, fuse
from nbmlops.serving.payload import InvalidRequest, RequestContract
from nbmlops.serving.rendezvous import (
    ACTING,
    CHAMPION,
    ERROR,
    FALLBACK,
    OVER_BUDGET,
    Batcher,
    Breaker,
    Loaded,
    ModelSet,
    NoModel,
    Router,
    check_rows,
    wanted,
)
from nbmlops.serving.shadow import archive_rows, shadow_outputs
from nbmlops.spec import FeatureSpec
from nbmlops.training import candidates as models
from tests import helpers

SPEC = FeatureSpec(numeric=["x", "z"], categorical=["c"], target="y")
CONTRACT = {"tables": {
    "t": {"columns": {"x": {"type": "number", "min": 0, "max": 10, "max_missing": 0},
                      "c": {"type": "category", "allowed": ["a", "b"]}}},
    "joined": {"columns": {"z": {"type": "number", "min": -5, "max": 5, "max_missing": 0}}},
}}  # fmt: skip


def _fitted(seed: int):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x": rng.uniform(0, 10, 200), "z": rng.normal(size=200),
                       "c": rng.choice(["a", "b"], 200)})  # fmt: skip
    df["y"] = (df["x"] + rng.normal(size=200) > 5).astype(int)
    pipeline = helpers.model("linear", SPEC, seed=seed)
    return models.fit(pipeline, df, SPEC)[0]


class Slow:
    """A fitted model that takes `seconds` per call, or raises."""

    def __init__(self, model, seconds: float = 0.0, fail: bool = False):
        self.model, self.seconds, self.fail, self.calls = model, seconds, fail, []

    def predict_proba(self, frame):
        self.calls.append(len(frame))
        time.sleep(self.seconds)
        if self.fail:
            raise RuntimeError("model file is corrupt")
        return self.model.predict_proba(frame)


RECORD = {"x": 7.5, "z": None, "c": "a"}


def test_contract_checks_each_field_and_normalises():
    rc = RequestContract(SPEC, CONTRACT)
    records, many = rc.records(json.dumps(RECORD).encode())
    assert (records, many) == ([{"x": 7.5, "z": None, "c": "a"}], False)
    frame = rc.frame(records * 2)
    assert list(frame.columns) == SPEC.columns and frame["x"].dtype == "float64"
    assert np.isnan(frame["z"]).all() and list(frame["c"]) == ["a", "a"]
    with pytest.raises(InvalidRequest) as caught:
        rc.records(json.dumps([RECORD, {"x": None, "z": "1", "c": "q"}, 3]).encode())
    assert [(p["loc"], p["type"]) for p in caught.value.problems] == [
        (["body", 1, "x"], "null"),
        (["body", 1, "z"], "float_type"),
        (["body", 1, "c"], "enum"),
        (["body", 2], "model_type"),
    ]
    with pytest.raises(InvalidRequest, match="outside the contract's range 0 to 10"):
        rc.records(json.dumps(RECORD | {"x": 11}).encode())
    with pytest.raises(InvalidRequest, match="'z' is 6.0, outside the contract's range -5 to 5"):
        rc.records(json.dumps(RECORD | {"z": 6.0}).encode())  # a joined table's range holds
    assert RequestContract(SPEC).records(json.dumps(RECORD | {"c": "q"}).encode())[0]
    with pytest.raises(InvalidRequest, match="'c' is not valid Unicode text") as caught:
        RequestContract(SPEC).records(b'{"x": 1, "z": 2, "c": "\\ud800"}')  # JSON escapes it
    assert caught.value.problems[0]["type"] == "string_unicode"


def test_breaker_opens_after_failures_in_a_row_and_tries_again_after_cooldown():
    now = [0.0]
    breaker = Breaker(threshold=3, cooldown=10, clock=lambda: now[0])
    for ok in (False, False, True, False, False):
        assert breaker.allow()
        breaker.record(ok)
    assert breaker.state == "closed"  # a success in between resets the count
    breaker.record(False)
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 10.0
    assert breaker.allow() and breaker.state == "half-open" and not breaker.allow()
    breaker.record(False)  # the trial failed: open again, for another cooldown
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 20.0
    assert breaker.allow()
    breaker.record(True)
    assert breaker.state == "closed" and breaker.allow()


def test_batcher_scores_waiting_requests_in_one_call():
    rc = RequestContract(SPEC)
    slow = Slow(_fitted(1), seconds=0.05)
    batcher = Batcher("test", rc.frame)
    first = batcher.submit(slow, [RECORD])
    time.sleep(0.01)  # the first call is running; these four wait and go together
    rest = [batcher.submit(slow, [RECORD | {"x": float(i)}] * (i + 1)) for i in range(4)]
    results = [f.result(5) for f in [first, *rest]]
    batcher.close()
    assert slow.calls == [1, 1 + 2 + 3 + 4]
    assert [len(r[0]) for r in results] == [1, 1, 2, 3, 4] and results[4][2] == 10
    direct = slow.model.predict_proba(rc.frame([RECORD | {"x": 3.0}] * 4))[:, 1]
    assert results[4][0] == pytest.approx(direct)


def _router(models_: ModelSet, **kw) -> Router:
    router = Router(RequestContract(SPEC).frame, SPEC.columns, budget_ms=100, reserve_ms=30, **kw)
    router.swap(models_)
    return router


def test_router_answers_with_champion_then_fallback_when_it_is_slow_or_fails():
    champion, fallback = _fitted(1), _fitted(2)
    sets = {
        "ok": ModelSet(Loaded("4", champion), CHAMPION, Loaded("3", fallback)),
        "slow": ModelSet(Loaded("4", Slow(champion, 0.3)), CHAMPION, Loaded("3", fallback)),
        "failing": ModelSet(Loaded("4", Slow(champion, fail=True)), CHAMPION, Loaded("3", fallback)),
    }  # fmt: skip
    ok = asyncio.run(_router(sets["ok"]).answer([RECORD]))
    assert (ok.version, ok.role, ok.reason) == ("4", CHAMPION, None)
    start = time.perf_counter()
    slow = asyncio.run(_router(sets["slow"]).answer([RECORD]))
    assert time.perf_counter() - start < 0.25  # did not wait for the slow champion
    assert (slow.version, slow.role) == ("3", FALLBACK) and slow.reason.startswith("over budget")
    assert slow.cause == OVER_BUDGET
    assert slow.proba == pytest.approx(fallback.predict_proba(
        RequestContract(SPEC).frame([RECORD]))[:, 1])  # fmt: skip
    failing = asyncio.run(_router(sets["failing"]).answer([RECORD]))
    assert failing.role == FALLBACK and failing.reason == "error: RuntimeError"  # no message text
    assert failing.cause == ERROR
    alone = ModelSet(Loaded("4", Slow(champion, fail=True)), CHAMPION, None)
    with pytest.raises(NoModel, match="no earlier champion"):
        asyncio.run(_router(alone).answer([RECORD]))


def test_a_hung_fallback_is_not_waited_on():
    both_slow = ModelSet(Loaded("4", Slow(_fitted(1), 2.0)), CHAMPION,
                         Loaded("3", Slow(_fitted(2), 2.0)))  # fmt: skip
    start = time.perf_counter()
    with pytest.raises(NoModel, match=r"fallback v3 had none within its deadline of 300 ms"):
        asyncio.run(_router(both_slow, fallback_deadline_ms=300).answer([RECORD]))
    assert time.perf_counter() - start < 1.0  # its deadline, far from the 2 s it would take


def test_a_full_queue_sheds_instead_of_growing():
    from nbmlops.serving.rendezvous import Overloaded

    slow = Slow(_fitted(1), 0.3)
    batcher = Batcher("t", RequestContract(SPEC).frame, max_waiting=10)
    first = batcher.submit(slow, [RECORD])
    time.sleep(0.05)  # the first call is running; the next ones wait
    waiting = [batcher.submit(slow, [RECORD] * 5) for _ in range(2)]
    with pytest.raises(Overloaded, match="10 records are waiting"):
        batcher.submit(slow, [RECORD])
    assert all(len(f.result(5)[0]) in (1, 5) for f in [first, *waiting])
    assert batcher.submit(slow, [RECORD]).result(5) is not None  # room again once taken
    batcher.close()


def test_router_drill_delays_only_the_champion():
    router = _router(ModelSet(Loaded("4", _fitted(1)), CHAMPION, Loaded("3", _fitted(2))),
                     champion_delay_ms=300)  # fmt: skip
    assert asyncio.run(router.answer([RECORD])).role == FALLBACK
    acting = _router(ModelSet(Loaded("5", _fitted(1)), ACTING, None), champion_delay_ms=300)
    assert asyncio.run(acting.answer([RECORD])).role == ACTING


def test_registry_view_names_answering_fallback_and_shadows():
    aliases = {"champion": "7", "challenger": "9", "canary": "8"}
    assert wanted(aliases, ["3", "5", "7"], ["challenger", "canary", "gone"]) == (
        "7", CHAMPION, "5", {"challenger": "9", "canary": "8"})  # fmt: skip
    assert wanted({"challenger": "2"}, [], ["challenger"]) == (
        "2", ACTING, None, {"challenger": "2"})  # fmt: skip
    assert wanted({"champion": "3"}, ["3"], []) == ("3", CHAMPION, None, {})


def test_archive_rotates_by_rows_and_age_and_files_are_whole(tmp_path):
    now = [0.0]
    archive = Archive(ArchiveSettings(str(tmp_path), rotate_rows=5, rotate_seconds=60),
                      clock=lambda: now[0])  # fmt: skip
    message = {"request_id": "r1", "received_at": 1_800_000_000.0, "records": [RECORD] * 3,
               "proba": [0.1, 0.6, 0.9], "version": "4", "role": CHAMPION, "model_ms": 2.5,
               "batch_rows": 3, "reason": None, "shadows": {"challenger": "5"}}  # fmt: skip
    shadow = Loaded("5", _fitted(3))

    class Cache:
        def get(self, version):
            return shadow

    outs = shadow_outputs([message, message | {"request_id": "r2"}], RequestContract(SPEC).frame,
                          Cache())  # fmt: skip
    assert outs[0]["challenger"]["rows"] == 6  # both requests in one call
    assert archive.add(archive_rows(message, outs[0])) is None
    first = archive.add(archive_rows(message | {"request_id": "r2"}, outs[1]))
    assert first is not None and len(pd.read_parquet(first)) == 6
    assert archive.add(archive_rows(message, outs[0])) is None and not archive.due()
    now[0] = 61.0
    second = archive.tick()
    rows = pd.read_parquet(second)
    assert len(rows) == 3 and sorted(tmp_path.glob("*.parquet")) == sorted([first, second])
    assert not list((tmp_path / ".segments").iterdir())  # every segment compacted
    assert (
        str(rows["received_at"].dtype).startswith("datetime64")
        and rows["fallback_reason"].isna().all()
    )
    expected = shadow.model.predict_proba(RequestContract(SPEC).frame([RECORD] * 3))[:, 1]
    assert rows["challenger_proba"].to_numpy() == pytest.approx(expected)
    assert list(rows["served_proba"]) == [0.1, 0.6, 0.9]


@pytest.mark.parametrize("candidate", sorted(helpers.KINDS))
def test_fused_scorer_gives_the_pipelines_very_probabilities(candidate):
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"x": rng.uniform(0, 10, 300), "z": rng.normal(size=300),
                       "c": rng.choice(["a", "b", "q"], 300)})  # fmt: skip
    df.loc[::7, "z"] = np.nan
    df["y"] = (df["x"] + rng.normal(size=300) > 5).astype(int)
    fitted = models.fit(helpers.model(candidate, SPEC, seed=1), df, SPEC)[0]
    sample = check_rows(SPEC.columns, df[SPEC.columns].head(20))
    scorer = fuse(fitted, sample)
    assert isinstance(scorer, Fused)
    new = df[SPEC.columns].sample(100, random_state=2).assign(c=["zz"] + ["a"] * 99)
    assert np.array_equal(scorer.predict_proba(new), fitted.predict_proba(new))


def test_fuse_keeps_a_model_it_cannot_reproduce():
    plain = LogisticRegression().fit(np.eye(3)[[0, 1, 2, 0]], [0, 1, 1, 0])
    assert fuse(plain, pd.DataFrame(np.eye(3))) is plain  # no ColumnTransformer to skip
    model = _fitted(1)
    model.steps[0][1].transformers_[0] = ("num", "drop", ["x", "z"])  # not what was fitted
    assert fuse(model, check_rows(SPEC.columns)) is model
