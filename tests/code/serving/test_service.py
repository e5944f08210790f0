"""The scoring service as a real process on 127.0.0.1, on the registry of a CI build.

The registry (a copy) holds three different candidates of one build: the champion (v1), the
champion before it (the fallback) and the challenger (the shadow). Every loop here is bounded in count and in time.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import threading
import time

import httpx
import numpy as np
import pandas as pd
import pytest

from nbmlops import storage
from nbmlops.data.batches import read_current_batch
from nbmlops.records import read_archive
from nbmlops.registry.loading import load_version
from nbmlops.registry.runs import register_candidate
from nbmlops.registry.store import Store
from nbmlops.registry.versions import CHALLENGER, set_champion, version_details
from nbmlops.serving.payload import RequestContract
from nbmlops.settings import DataSettings, ServingSettings
from nbmlops.spec import FeatureSpec
from tests.code.serving.server import Server

pytestmark = [pytest.mark.pipeline, pytest.mark.xdist_group("build")]


@pytest.fixture(scope="module")
def served(ci_build, tmp_path_factory):
    """A project folder with the build's spec and a copy of its registry, three models in it."""
    root = tmp_path_factory.mktemp("served")
    for name in ("env.ci.yaml", "contracts"):
        src = ci_build.project / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, root / name)
    data = root / ci_build.products.relative_to(ci_build.project) / "data"
    data.mkdir(parents=True)
    for name in ("features.json", "holdout.parquet"):
        shutil.copy2(ci_build.products / "data" / name, data / name)
    (root / "mlruns").mkdir()
    shutil.copy2(ci_build.project / "mlruns" / "mlflow.db", root / "mlruns" / "mlflow.db")
    store = Store(f"sqlite:///{root}/mlruns/mlflow.db",
                  str(ci_build.project / "mlruns" / "artifacts"), "flight-delay-ci")  # fmt: skip
    client = store.client()
    first = client.get_model_version(store.model_name, "1")
    build = client.get_run(first.run_id).data.tags["build_id"]
    others = [c for c in ci_build.candidates if c != first.tags["candidate"]]
    assert others, "the service's tests need a second candidate in env.ci.yaml"
    fallback, challenger = (register_candidate(store, build, c)
                            for c in dict.fromkeys([others[0], others[-1]]))  # fmt: skip
    set_champion(store, fallback, [fallback])
    set_champion(store, "1", [fallback, "1"])
    client.set_registered_model_alias(store.model_name, CHALLENGER, challenger)
    spec = FeatureSpec.from_dict(storage.read_json(data / "features.json"))
    holdout = pd.read_parquet(data / "holdout.parquet").head(200)
    return {"root": root, "store": store, "spec": spec, "holdout": holdout,
            "champion": "1", "fallback": fallback, "challenger": challenger}  # fmt: skip


def _records(served, n: int, start: int = 0) -> list[dict]:
    contract = RequestContract(served["spec"])
    return contract.example(served["holdout"].iloc[start:], n)


def _proba(served, version: str, records: list[dict]) -> np.ndarray:
    model = load_version(served["store"], version)
    frame = RequestContract(served["spec"]).frame(records)
    return model.predict_proba(frame[served["spec"].columns])[:, 1]


def test_answers_come_from_the_champion_and_match_its_model(served):
    records = _records(served, 5)
    spec = served["spec"]  # the request carries the input columns; the model derives the rest
    derived = set(spec.model_columns) - set(spec.columns)
    assert derived and not derived & set(records[0])
    # Who answers, not how fast: a budget a busy test machine cannot miss (the budget itself is
    # tested with a slowed champion below).
    with Server(served["root"], latency_budget_ms=2000) as server:
        one = server.post(records[0])
        many = server.post(records)
        assert server.get("/health").status_code == 200
        assert server.get("/ready").json() == {"ready": True, "reason": "ready",
                                               "registry": "reachable"}  # fmt: skip
        models = server.get("/models").json()
    assert one.status_code == 200 and many.status_code == 200
    body = one.json()
    assert (body["role"], body["model_version"], body["fallback_reason"]) == ("champion", "1", None)
    expected = _proba(served, "1", records)
    assert body["probability"] == pytest.approx(expected[0], abs=1e-6)
    # the decision at the threshold chosen with the model and logged with its run
    details = version_details(served["store"], "1")
    threshold = float(details["params"]["decision_threshold"])
    assert threshold != 0.5 and body["prediction"] == int(expected[0] >= threshold)
    got = [p["probability"] for p in many.json()["predictions"]]
    assert got == pytest.approx(list(expected), abs=1e-6)
    assert [p["prediction"] for p in many.json()["predictions"]] == [
        int(p >= threshold) for p in expected
    ]
    assert models["serving"] == {"champion": "1", "fallback": served["fallback"],
                                 "challenger": served["challenger"]}  # fmt: skip
    # every candidate kind answers in its compiled form, built at registration
    assert sorted(models["scoring"]) == sorted(models["serving"].values())
    assert all(f["form"].startswith("compiled (") and "why_not_compiled" not in f
               for f in models["scoring"].values()), models["scoring"]  # fmt: skip


BAD = [
    ("missing field", lambda r: {k: v for k, v in r.items() if k != "distance"},
     ["body", "distance"], "'distance' is required"),
    ("text in a number", lambda r: r | {"temp": "warm"}, ["body", "temp"], "must be a number"),
    ("outside the contract's range", lambda r: r | {"humid": 140.0}, ["body", "humid"],
     "outside the contract's range 0 to 100"),
    ("value the contract forbids", lambda r: r | {"origin": "BOS"}, ["body", "origin"],
     "not one of the contract's values"),
    ("null where the contract forbids it", lambda r: r | {"carrier": None}, ["body", "carrier"],
     "may not be null"),
    ("a list with one bad record", lambda r: [r, r | {"distance": True}], ["body", 1, "distance"],
     "must be a number"),
    ("a derived column sent", lambda r: r | {"day_of_week": "Sat"}, ["body", "day_of_week"],
     "is derived by the model (features/flights.py)"),
]  # fmt: skip


def test_bad_requests_get_422_naming_the_field(served):
    record = _records(served, 1)[0]
    with Server(served["root"]) as server:
        for label, change, loc, words in BAD:
            answer = server.post(change(record))
            assert answer.status_code == 422, label
            problems = answer.json()["detail"]
            assert [p["loc"] for p in problems] == [loc], label
            assert words in problems[0]["msg"], label
        for raw, words in [(b"{not json", "not JSON"), (b"[]", "no records"),
                           (json.dumps(record).replace('"temp": ', '"temp": NaN, "x": ')
                            .encode(), "must be finite"),
                           (json.dumps(record | {"dest": "\ud800"}).encode(),
                            "not valid Unicode text")]:  # fmt: skip
            answer = server.post_raw(raw)
            assert answer.status_code == 422 and words in answer.text, raw
        assert server.post(record).status_code == 200  # still serving
        text = server.get("/metrics").text
    assert f'nbmlops_requests_total{{outcome="invalid"}} {len(BAD) + 4}.0' in text
    assert 'nbmlops_requests_total{outcome="ok"} 1.0' in text


def test_every_record_is_archived_with_the_shadow_and_reads_as_a_batch(served, tmp_path):
    archive = tmp_path / "archive"
    records = _records(served, 30)
    # Who answered is checked below; a budget a busy machine cannot miss keeps that the champion.
    with Server(served["root"], "--archive", str(archive), latency_budget_ms=2000) as server:
        for i in range(0, 30, 3):
            assert server.post(records[i : i + 3]).status_code == 200
        deadline = time.monotonic() + 30
        while "nbmlops_archived_records_total 30.0" not in server.get("/metrics").text:
            assert time.monotonic() < deadline, "the shadow process did not report 30 records"
            time.sleep(0.2)
        shadow_text = server.get("/metrics").text
    files = sorted(archive.glob("*.parquet"))
    assert files and not list(archive.glob("*.tmp"))
    rows = pd.concat([pd.read_parquet(f) for f in files]).sort_values(["received_at", "record"])
    assert len(rows) == 30 and rows["request_id"].nunique() == 10
    assert set(rows["served_version"]) == {"1"}
    assert set(rows["challenger_version"]) == {served["challenger"]}
    order = [
        records.index(r)
        for r in rows[[f.name for f in RequestContract(served["spec"]).fields]]
        .astype(object)
        .where(rows.notna(), None)
        .to_dict("records")
    ]
    assert sorted(order) == list(range(30))
    expected = _proba(served, served["challenger"], [records[i] for i in order])
    assert rows["challenger_proba"].to_numpy() == pytest.approx(expected, abs=1e-6)
    assert (rows["challenger_ms"] > 0).all() and (rows["served_ms"] > 0).all()
    assert rows["challenger_error"].isna().all()
    assert 'nbmlops_shadow_seconds_count{alias="challenger"} 10.0' in shadow_text
    settings = DataSettings.from_params({"target": "late"})
    batch = read_current_batch(files[0], served["spec"], settings)
    assert len(batch) == len(pd.read_parquet(files[0])) and batch["late"].isna().all()


def _hammer(server, records, stop: threading.Event, seen: list, failures: list) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        i = 0
        while not stop.is_set() and len(seen) < 20_000:
            try:
                answer = client.post("/predict", json=records[i % len(records)])
                if answer.status_code != 200:
                    failures.append((answer.status_code, answer.text[:200]))
                else:
                    seen.append(answer.json()["model_version"])
            except httpx.HTTPError as exc:
                failures.append(repr(exc))
            i += 1


def test_champion_moves_under_traffic_without_one_failed_request(served):
    store, moves, other = served["store"], 20, served["fallback"]
    records = _records(served, 20)
    with Server(served["root"], poll_seconds=0.1) as server:
        stop, seen, failures = threading.Event(), [], []
        clients = [threading.Thread(target=_hammer, args=(server, records, stop, seen, failures))
                   for _ in range(4)]  # fmt: skip
        for c in clients:
            c.start()
        try:
            for i in range(moves):
                version, before = (other, "1") if i % 2 == 0 else ("1", other)
                set_champion(store, version, [before, version])
                deadline = time.monotonic() + 20
                while server.get("/models").json()["serving"]["champion"] != version:
                    assert time.monotonic() < deadline, f"move {i + 1} to v{version} not seen"
                    time.sleep(0.05)
                time.sleep(0.1)
        finally:
            stop.set()
            for c in clients:
                c.join(30)
        models = server.get("/models").json()
    assert failures == []
    assert models["swaps"] >= moves + 1
    assert {"1", other} <= set(seen) and len(seen) > moves


def test_a_slow_champion_is_answered_for_by_the_fallback(served):
    record = _records(served, 1)[0]
    # the champion's share (100 ms) is far below its 400 ms delay; the fallback has 100 ms of
    # its own, which a busy machine meets
    with Server(served["root"], "--drill-latency-ms", "400", latency_budget_ms=200,
                fallback_reserve_ms=100, breaker_failures=3) as server:  # fmt: skip
        answers, seconds = [], []
        for _ in range(8):
            start = time.perf_counter()
            answers.append(server.post(record).json())
            seconds.append(time.perf_counter() - start)
        models = server.get("/models").json()
        text = server.get("/metrics").text
    assert {(a["role"], a["model_version"]) for a in answers} == {("fallback", served["fallback"])}
    reasons = [a["fallback_reason"] for a in answers]
    assert all(r.startswith("over budget") for r in reasons[:3])
    assert all(r.startswith("breaker open") for r in reasons[3:])
    assert max(seconds) < 0.4  # nobody waited for the delayed champion
    expected = _proba(served, served["fallback"], [record])[0]
    assert answers[0]["probability"] == pytest.approx(expected, abs=1e-6)
    assert models["breaker"] == "open"
    assert f'nbmlops_answers_total{{role="fallback",version="{served["fallback"]}"}} 8.0' in text
    assert not any(math.isnan(a["probability"]) for a in answers)


def test_a_champion_that_cannot_be_loaded_leaves_the_old_one_serving(served):
    import mlflow

    store = served["store"]
    source = store.client().get_model_version(store.model_name, "1").source
    mlflow.set_tracking_uri(store.tracking_uri)
    bad = mlflow.register_model(source, store.model_name, tags={"sha256": "0" * 64}).version
    record = _records(served, 1)[0]
    try:
        with Server(served["root"], latency_budget_ms=2000) as server:  # who answers, not how fast
            set_champion(store, str(bad), ["1", str(bad)])
            deadline = time.monotonic() + 30
            while not (server.get("/models").json()["registry_error"] or "").count("sha256"):
                assert time.monotonic() < deadline, "the load failure was not reported"
                time.sleep(0.2)
            answer = server.post(record).json()
            models = server.get("/models").json()
            text = server.get("/metrics").text
    finally:
        set_champion(store, "1", [served["fallback"], "1"])
    assert (answer["role"], answer["model_version"]) == ("champion", "1")
    assert (
        models["serving"]["champion"] == "1" and "refusing to load it" in models["registry_error"]
    )
    assert "nbmlops_registry_errors_total 0.0" not in text


def _archived(archive) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(f) for f in sorted(archive.glob("*.parquet"))])


def _metric(text: str, name: str) -> float:
    return float(next(ln.split()[-1] for ln in text.splitlines() if ln.startswith(name + " ")))


def test_a_service_killed_under_load_keeps_every_record_answered_a_second_before(served, tmp_path):
    """kill -9 of the service and its archive process while four clients post; a restart on
    the same folder compacts what was left, and every answer older than a second is there."""
    archive = tmp_path / "archive"
    records = _records(served, 40)
    answered: list[tuple[float, str]] = []  # (when the answer came, request id)
    stop = threading.Event()

    def client(url: str, offset: int) -> None:
        with httpx.Client(base_url=url, timeout=5) as c:
            i = offset
            while not stop.is_set() and len(answered) < 50_000:
                try:
                    answer = c.post("/predict", json=records[i % len(records)])
                except httpx.HTTPError:
                    return  # the service is gone
                if answer.status_code == 200:
                    answered.append((time.monotonic(), answer.json()["request_id"]))
                i += 1

    with Server(served["root"], "--archive", str(archive), latency_budget_ms=2000) as server:
        threads = [threading.Thread(target=client, args=(server.url, k)) for k in range(4)]
        for t in threads:
            t.start()
        time.sleep(4)
        killed = time.monotonic()
        os.killpg(server.process.proc.pid, signal.SIGKILL)
        server.process.proc.wait(30)
        stop.set()
        for t in threads:
            t.join(30)
    assert len(answered) > 100, "too little load to prove anything"
    with Server(served["root"], "--archive", str(archive)) as again:
        text = again.get("/metrics").text
    kept = set(_archived(archive)["request_id"])
    old = {rid for at, rid in answered if at < killed - 1.0}
    lost = [rid for _, rid in answered if rid not in kept]
    print(f"kill -9 under load: {len(answered)} answered, {len(lost)} not on disk")
    assert old <= kept, f"{len(old - kept)} answers older than a second were lost"
    assert _metric(text, "nbmlops_archive_recovered_records_total") >= len(old)
    assert not list((archive / ".segments").glob("*.jsonl"))  # all compacted on stop


def test_an_unwritable_archive_turns_ready_off_and_keeps_the_records_until_it_is_back(
    served, tmp_path
):
    archive = tmp_path / "archive"
    archive.write_text("a file where the archive folder should be")
    records = _records(served, 6)
    with Server(served["root"], "--archive", str(archive), latency_budget_ms=2000) as server:
        ids = [server.post(record).json()["request_id"] for record in records]
        deadline = time.monotonic() + 20
        while server.get("/ready").status_code == 200:
            assert time.monotonic() < deadline, "/ready stayed 200 with no archive to write"
            time.sleep(0.2)
        assert "cannot write the request archive" in server.get("/ready").json()["reason"]
        label = {"request_id": ids[0], "outcome": 1}
        refused = server.client.post("/feedback", json=label)  # no folder for labels.jsonl
        assert refused.status_code == 503 and "nothing was recorded" in refused.text
        archive.unlink()
        while server.get("/ready").status_code != 200:
            assert time.monotonic() < deadline + 20, "/ready did not come back"
            time.sleep(0.2)
        assert server.client.post("/feedback", json=label).json()["accepted"] == 1
        text = server.get("/metrics").text
    assert _metric(text, 'nbmlops_labels_total{status="unwritable"}') == 1
    assert _metric(text, "nbmlops_archived_records_total") == 6
    assert _metric(text, "nbmlops_archive_dropped_records_total") == 0
    assert len(_archived(archive)) == 6


def _rss_mb(pid: int) -> float:
    status = open(f"/proc/{pid}/status").read()
    return int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS"))) / 1024


def test_hostile_requests_are_refused_before_they_cost_memory_or_a_500(served):
    record = _records(served, 1)[0]
    with Server(served["root"]) as server:
        pid = server.process.proc.pid
        before = _rss_mb(pid)
        declared = server.post_raw(b'{"dest": "' + b"x" * (50 * 2**20) + b'"}')
        assert declared.status_code == 413 and "max_body_kb" in declared.text

        def chunks():  # no Content-Length: refused once 2 MB have arrived
            for _ in range(50):
                yield b"x" * 2**20

        streamed = server.client.post("/predict", content=chunks(),
                                      headers={"content-type": "application/json"})  # fmt: skip
        assert streamed.status_code == 413
        grew = _rss_mb(pid) - before
        print(f"server memory after two 50 MB bodies: +{grew:.0f} MB")
        assert grew < 100
        for raw, words in [
            (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
            (json.dumps(record | {"distance": 10**400}).encode(), "too large for a float"),
            (json.dumps(record | {"dest": "J" * 5000}).encode(), "5,000 characters"),
        ]:
            answer = server.post_raw(raw)
            assert answer.status_code == 422 and words in answer.text, words
        text_plain = server.post_raw(json.dumps(record).encode(), kind="text/plain")
        assert text_plain.status_code == 415  # what a page elsewhere can post without asking
        other_host = server.client.post("/predict", json=record, headers={"host": "evil.test"})
        assert other_host.status_code == 400
        assert server.get("/docs").status_code == 404
        assert server.get("/openapi.json").status_code == 404
        models = server.get("/models")
        assert str(served["root"]) not in models.text
        assert models.json()["registry"] == "sqlite: …/mlflow.db"
        assert server.post(record).status_code == 200 and server.get("/health").status_code == 200


def test_a_token_guards_everything_but_the_probes(served, monkeypatch):
    monkeypatch.setenv("NBMLOPS_TEST_TOKEN", "s3cret")
    record = _records(served, 1)[0]
    with Server(served["root"], token_env="NBMLOPS_TEST_TOKEN") as server:
        assert server.post(record).status_code == 401
        assert server.get("/metrics").status_code == 401
        assert server.get("/models").status_code == 401
        assert server.get("/ready").status_code == 200
        wrong = server.client.post("/predict", json=record,
                                   headers={"authorization": "Bearer guess"})  # fmt: skip
        assert wrong.status_code == 401
        right = server.client.post("/predict", json=record,
                                   headers={"authorization": "Bearer s3cret"})  # fmt: skip
        assert right.status_code == 200


def _archive_process(server) -> int:
    """The pid of the server's shadow and archive process (a spawned child)."""
    found = _archive_pid(server)
    if found is None:
        raise AssertionError("no shadow and archive process under the server")
    return found


def _archive_pid(server) -> int | None:
    parent = server.process.proc.pid
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = open(f"/proc/{entry}/status").read()
            cmdline = open(f"/proc/{entry}/cmdline", "rb").read()
        except OSError:
            continue
        if f"\nPPid:\t{parent}\n" in status and b"spawn_main" in cmdline:
            return int(entry)
    return None


def _ended(pid: int) -> bool:
    """Whether process `pid` has exited: gone, or a zombie nobody has reaped yet. Orphaned once
    its parent is gone, it waits for PID 1 to reap it, and a container's PID 1 may never."""
    try:
        return "\nState:\tZ" in open(f"/proc/{pid}/status").read()
    except FileNotFoundError:
        return True


def _wait_for(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _closed_by_server(sock, drip: bytes, seconds: float) -> bool:
    """Drip `drip` one byte at a time every 0.2 s; True once the server closes the socket."""
    deadline = time.monotonic() + seconds
    sock.settimeout(0.2)
    at = 0
    while time.monotonic() < deadline:
        try:
            if sock.recv(1024) == b"":
                return True
        except TimeoutError:
            pass
        except OSError:
            return True
        if at < len(drip):
            try:
                sock.send(drip[at : at + 1])
            except OSError:
                return True
            at += 1
    return False


def test_slow_clients_are_cut_off_and_the_service_keeps_answering(served):
    """A connection that sends nothing, one that trickles its headers and one that trickles its
    body are closed once `request_read_seconds` have passed; idle keep-alive connections are not
    counted as slow, and a request that arrives in parts within the time is answered."""
    import socket

    record = _records(served, 1)[0]
    body = json.dumps(record).encode()
    with Server(served["root"], request_read_seconds=1.5, latency_budget_ms=2000) as server:
        assert server.post(record).status_code == 200  # then this keep-alive connection idles
        head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json"
                f"\r\ncontent-length: {len(body)}\r\n\r\n").encode()  # fmt: skip
        silent, headers, trickle = (socket.create_connection(("127.0.0.1", server.port))
                                    for _ in range(3))  # fmt: skip
        trickle.sendall(head)
        started = time.monotonic()
        results = {}
        threads = [threading.Thread(target=lambda n=n, s=s, d=d: results.__setitem__(
                       n, _closed_by_server(s, d, 8)))
                   for n, s, d in [("silent", silent, b""), ("headers", headers, head),
                                   ("body", trickle, body)]]  # fmt: skip
        for t in threads:
            t.start()
        assert server.get("/health").status_code == 200  # answered meanwhile
        for t in threads:
            t.join(15)
        took = time.monotonic() - started
        for s in (silent, headers, trickle):
            s.close()
        with socket.create_connection(("127.0.0.1", server.port)) as parts:
            parts.sendall(head)
            time.sleep(0.3)
            parts.sendall(body[: len(body) // 2])
            time.sleep(0.3)
            parts.sendall(body[len(body) // 2 :])
            assert parts.recv(4096).startswith(b"HTTP/1.1 200")
        text = server.get("/metrics").text
    assert results == {"silent": True, "headers": True, "body": True}
    assert took < 6, f"slow clients were held {took:.1f} s"
    assert 'nbmlops_requests_total{outcome="slow"} 3.0' in text


def test_an_archive_that_falls_behind_sheds_load_with_503_and_loses_nothing(served, tmp_path):
    """The archive process paused: requests pile up to `archive_backlog_mb`, then /predict
    answers 503 (counted as shed) rather than answer records it could not keep; resumed, it
    catches up and every record answered with 200 is on disk."""
    archive = tmp_path / "archive"
    records = _records(served, 20)
    body_bytes = len(json.dumps(records).encode())
    with Server(served["root"], "--archive", str(archive), archive_backlog_mb=0.05,
                latency_budget_ms=2000) as server:  # fmt: skip
        worker = _archive_process(server)
        answered = shed = 0
        os.kill(worker, signal.SIGSTOP)
        try:
            for _ in range(200):
                answer = server.post(records)
                if answer.status_code == 503:
                    shed += 1
                    if shed == 3:
                        break
                else:
                    assert answer.status_code == 200, answer.text
                    answered += 1
            text = server.get("/metrics").text
        finally:
            os.kill(worker, signal.SIGCONT)
        assert shed == 3, "no 503 with the archive behind"
        assert "archive is behind" in answer.json()["detail"]
        assert answered <= 0.05 * 2**20 / body_bytes + 1  # no more than the backlog holds
        assert 'nbmlops_requests_total{outcome="shed"} 3.0' in text
        _wait_for(lambda: server.post(records).status_code == 200, 10, "no 200 after resuming")
        answered += 1
    rows = _archived(archive)
    assert len(rows) == 20 * answered and rows["request_id"].nunique() == answered


def test_sigterm_stops_the_archive_process_within_its_bound_and_it_is_restarted(served, tmp_path):
    """SIGTERM to the archive process alone: it writes what it holds and exits within
    TERM_SECONDS; the service starts a new one and is ready again. SIGTERM to the whole group
    with a client trickling a request: everything is gone within the grace period and the
    archive process's bound, every answered record on disk."""
    import socket

    from nbmlops.serving.service import GRACE_SECONDS
    from nbmlops.serving.shadow import TERM_SECONDS

    archive = tmp_path / "archive"
    records = _records(served, 10)
    with Server(served["root"], "--archive", str(archive), latency_budget_ms=2000) as server:
        assert server.post(records).status_code == 200
        worker = _archive_process(server)
        os.kill(worker, signal.SIGTERM)
        _wait_for(lambda: _ended(worker), TERM_SECONDS + 5, "the archive process ignored SIGTERM")
        # restarted: as stopped, or (when the exited process is not yet seen to be gone) as
        # stuck a few seconds later
        _wait_for(lambda: "nbmlops_shadow_restarts_total{" in server.get("/metrics").text, 60,
                  "the archive process was not restarted")  # fmt: skip
        _wait_for(lambda: server.get("/ready").status_code == 200, 120, "no new archive process")
        _wait_for(lambda: _archive_pid(server) not in (None, worker), 30,
                  "no new archive process under the server")  # fmt: skip
        assert server.post(records).status_code == 200
        text = server.get("/metrics").text
        restarts = [
            ln for ln in text.splitlines() if ln.startswith("nbmlops_shadow_restarts_total")
        ]
        assert len(restarts) == 1 and restarts[0].endswith(" 1.0"), restarts
        trickle = socket.create_connection(("127.0.0.1", server.port))
        trickle.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: "
                        b"application/json\r\ncontent-length: 100000\r\n\r\n[")  # fmt: skip
        worker = _archive_process(server)
        time.sleep(0.3)
        started = time.monotonic()
        os.killpg(server.process.proc.pid, signal.SIGTERM)
        server.process.proc.wait(60)
        _wait_for(lambda: _ended(worker), 30, "the archive process lives")
        took = time.monotonic() - started
        trickle.close()
    print(f"SIGTERM with a client trickling its body: all stopped in {took:.1f} s")
    assert took < GRACE_SECONDS + TERM_SECONDS
    rows = read_archive(archive)  # on the disk: Parquet files and segments not yet compacted
    assert len(rows) == 20 and rows["request_id"].nunique() == 2


def test_two_services_on_one_archive_folder_keep_every_record_once(served, tmp_path):
    """Two services write one archive folder under load (each its own segments; compaction
    under a lock): every answered record is on disk exactly once."""
    archive = tmp_path / "archive"
    records = _records(served, 40)
    answered: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def client(url: str, offset: int) -> None:
        with httpx.Client(base_url=url, timeout=10) as c:
            i = offset
            while not stop.is_set() and len(answered) < 20_000:
                answer = c.post("/predict", json=records[(i % 20) * 2 : (i % 20) * 2 + 2])
                if answer.status_code != 200:
                    failures.append(answer.text[:200])
                    return
                answered.append(answer.json()["request_id"])
                i += 1

    small = {"rotate_rows": 200, "latency_budget_ms": 2000}  # many compactions, both at work
    with (Server(served["root"], "--archive", str(archive), **small) as one,
          Server(served["root"], "--archive", str(archive), **small) as two):  # fmt: skip
        threads = [threading.Thread(target=client, args=(s.url, k))
                   for k, s in enumerate((one, two, one, two))]  # fmt: skip
        for t in threads:
            t.start()
        time.sleep(4)
        stop.set()
        for t in threads:
            t.join(30)
    rows = _archived(archive)
    assert failures == []
    assert len(answered) > 100, "too little load to prove anything"
    assert len(rows) == 2 * len(answered)
    assert set(rows["request_id"]) == set(answered)
    assert not rows.duplicated(["request_id", "record"]).any()
    assert not list((archive / ".segments").glob("*.jsonl"))


def test_live_labels_end_to_end_equal_a_computation_by_hand(served, tmp_path):
    """Serve 200 records, send the outcomes of 150 (and an unknown id, a duplicate, a
    contradiction, a record the request never held, a bad outcome), restart, then build the
    live page over the archive: its figures equal scikit-learn's on the joined rows."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from nbmlops.commands import live

    archive = tmp_path / "archive"
    records = _records(served, 200)
    truth = served["holdout"]["late"].iloc[:200].astype(int).tolist()
    sent = []  # (request id, record, outcome)
    with Server(served["root"], archive=str(archive), latency_budget_ms=2000) as server:
        for start in range(0, 200, 10):
            answer = server.post(records[start : start + 10]).json()
            sent += [(answer["request_id"], i, truth[start + i]) for i in range(10)]
        labels = [{"request_id": r, "record": i, "outcome": y} for r, i, y in sent[:150]]
        labels[0]["outcome"] = bool(labels[0]["outcome"])  # JSON true/false is taken too
        first = server.client.post("/feedback", json={"labels": labels}).json()
        assert first["accepted"] == 150 and first["counts"] == {"accepted": 150}
        r0, _, y0 = sent[0]
        odd = [
            {"request_id": "f" * 32, "outcome": 1},  # no such request
            {"request_id": r0, "record": 0, "outcome": y0},  # the same again
            {"request_id": r0, "record": 1, "outcome": 1 - sent[1][2]},  # the other outcome
            {"request_id": r0, "record": 10, "outcome": 0},  # the request held 10 records
            {"request_id": r0, "record": 2, "outcome": "yes"},
        ]
        results = server.client.post("/feedback", json=odd).json()["results"]
        assert [r["status"] for r in results] == [
            "unknown", "duplicate", "contradicts", "unknown", "invalid"]  # fmt: skip
        assert (
            results[2]["recorded"] == sent[1][2] and "the first one stands" in results[2]["detail"]
        )
        assert "held 10 record(s)" in results[3]["detail"]
        bad = server.client.post("/feedback", content=b"{not json",
                                 headers={"content-type": "application/json"})  # fmt: skip
        assert bad.status_code == 422
        text = server.get("/metrics").text
    for status, n in (("accepted", 150), ("unknown", 2), ("duplicate", 1), ("contradicts", 1),
                      ("invalid", 2)):  # fmt: skip
        assert _metric(text, f'nbmlops_labels_total{{status="{status}"}}') == n
    # after a restart the ids and labels are read back from the folder
    with Server(served["root"], archive=str(archive), latency_budget_ms=2000) as server:
        again = server.client.post("/feedback", json=[
            {"request_id": r0, "record": 0, "outcome": y0},
            {"request_id": sent[150][0], "record": 0, "outcome": sent[150][2]}]).json()  # fmt: skip
        assert [r["status"] for r in again["results"]] == ["duplicate", "accepted"]
    assert len((archive / "labels.jsonl").read_text().splitlines()) == 151

    out = tmp_path / "live"
    assert live.main(["--env", str(served["root"] / "env.serve.yaml"), "--out", str(out)]) == 0
    found = storage.read_json(out / "live.json")
    assert found["counts"] == {"answered": 200, "labels": 151, "labelled": 151,
                               "labels_without_a_record": 0, "contradicting_labels": 0}  # fmt: skip
    rows = _archived(archive).merge(
        pd.DataFrame(sent[:151], columns=["request_id", "record", "y"]), on=["request_id", "record"]
    )  # by hand: the archive joined to the outcomes this test sent
    assert len(rows) == 151 and set(rows["served_role"]) == {"champion"}
    models = {m["model"]: m for m in found["models"] if m["window"] == "all"}
    champion, shadow = models["champion v1"], models[f"challenger v{served['challenger']} (shadow)"]
    assert champion["rows"] == shadow["rows"] == 151
    assert champion["roc_auc"] == pytest.approx(roc_auc_score(rows["y"], rows["served_proba"]))
    assert champion["pr_auc"] == pytest.approx(
        average_precision_score(rows["y"], rows["served_proba"])
    )
    assert champion["brier"] == pytest.approx(((rows["served_proba"] - rows["y"]) ** 2).mean())
    assert shadow["roc_auc"] == pytest.approx(roc_auc_score(rows["y"], rows["challenger_proba"]))
    assert champion["roc_auc_low"] < champion["roc_auc"] < champion["roc_auc_high"]
    paired = next(p for p in found["paired"] if p["window"] == "all")
    assert paired["rows"] == 151
    assert paired["difference"] == pytest.approx(shadow["roc_auc"] - champion["roc_auc"])
    assert paired["low"] < paired["difference"] < paired["high"]
    page = (out / "index.html").read_text()
    assert f"{champion['roc_auc']:.4f} [{champion['roc_auc_low']:.4f}" in page
    assert "Shadow minus champion on the same records" in page
    # the same records are the promotion's live evidence for the challenger
    from nbmlops.registry import evidence

    rules = {"selection_metric": "roc_auc", "metrics": {"roc_auc": {"max_regression": 0.02}}}
    found = evidence.live_evidence(archive, "1", served["challenger"], rules)
    assert found.rows == 151 and found.source == "live labels of the scoring service"
    assert found.difference.difference == pytest.approx(paired["difference"])
    assert "DeLong, paired" in str(found) and "151 rows" in str(found)
    assert evidence.live_evidence(archive, "1", "99", rules).gate is None  # never shadowed


def _wait_json(server, path: str, check, seconds: float = 30.0) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = server.get(path).json()
        if check(found):
            return found
        time.sleep(0.2)
    raise AssertionError(f"{path} never showed it in {seconds:.0f} s: {found}")


def test_a_canary_answers_its_share_by_key_and_a_worse_one_is_rolled_back(served, tmp_path):
    """A 30 % canary keyed on `distance`: each answer names its arm and the archive keeps it;
    a record's arm never changes; the canary's answers are the challenger's. Labels that make
    the canary worse roll it back within a check, and a restarted service keeps it so."""
    archive = tmp_path / "archive"
    records = _records(served, 200)
    experiment = {"share": 0.3, "key": "distance", "min_labels": 20, "check_seconds": 0.5}
    with Server(served["root"], archive=str(archive), latency_budget_ms=2000,
                experiment=experiment) as server:  # fmt: skip
        answers = [server.post(r).json() for r in records]
        arms = [a["arm"] for a in answers]
        assert set(arms) == {"champion", "canary"} and 0.2 <= arms.count("canary") / 200 <= 0.4
        for record, arm in zip(records, arms, strict=True):  # the same key, the same arm
            same = [a for r, a in zip(records, arms, strict=True)
                    if r["distance"] == record["distance"]]  # fmt: skip
            assert set(same) == {arm}
        canary = [i for i, a in enumerate(arms) if a == "canary"]
        assert {answers[i]["model_version"] for i in canary} == {served["challenger"]}
        assert {answers[i]["role"] for i in canary} == {"canary"}
        expected = _proba(served, served["challenger"], [records[i] for i in canary])
        assert [answers[i]["probability"] for i in canary] == pytest.approx(expected, abs=1e-6)
        mixed = server.post(records[:20]).json()  # one request, both arms: split, put back
        assert mixed["role"] == "experiment" and mixed["model_version"] is None
        assert [p["arm"] for p in mixed["predictions"]] == arms[:20]
        assert [p["role"] for p in mixed["predictions"]] == [
            "canary" if a == "canary" else "champion" for a in arms[:20]]  # fmt: skip
        assert [p["probability"] for p in mixed["predictions"]] == pytest.approx(
            [a["probability"] for a in answers[:20]], abs=1e-6)  # fmt: skip
        models = server.get("/models").json()
        assert models["serving"]["canary"] == served["challenger"]
        assert models["experiment"]["share"] == 0.3
        # labels that make the canary wrong and the champion right
        labels = [{"request_id": a["request_id"],
                   "outcome": int((a["probability"] >= 0.5) != (a["arm"] == "canary"))}
                  for a in answers]  # fmt: skip
        assert server.client.post("/feedback", json=labels).json()["accepted"] == 200
        found = _wait_json(server, "/models", lambda m: m["experiment"]["share"] == 0)
        assert "it is worse on" in found["experiment"]["rolled_back"]
        assert found["experiment"]["test"]["decision"].startswith("stop for the champion")
        after = [server.post(r).json()["arm"] for r in records[:50]]
        assert set(after) == {"champion"}
        assert _metric(server.get("/metrics").text, "nbmlops_canary_share") == 0
    rows = _archived(archive)
    by_request = {a["request_id"]: a["arm"] for a in answers}
    single = rows[rows["request_id"].isin(by_request)]
    assert single["served_arm"].tolist() == single["request_id"].map(by_request).tolist()
    split = rows[rows["request_id"] == mixed["request_id"]].sort_values("record")
    assert split["record"].tolist() == list(range(20))
    assert split["served_arm"].tolist() == arms[:20]
    during = rows[rows["request_id"].isin([a["request_id"] for a in answers])]
    assert set(during["experiment_canary"]) == {served["challenger"]}
    assert set(during["experiment_champion"]) == {"1"}
    later = rows[~rows["request_id"].isin([*by_request, mixed["request_id"]])]
    assert len(later) == 50 and later["experiment_canary"].isna().all()  # after the rollback
    with Server(served["root"], archive=str(archive), latency_budget_ms=2000,
                experiment=experiment) as server:  # fmt: skip
        again = server.get("/models").json()["experiment"]
        assert again["share"] == 0 and "it is worse on" in again["rolled_back"]
    # `make live` and `make promote` read the same decision from the same files
    from nbmlops.commands import live
    from nbmlops.registry import evidence, promotion

    out = tmp_path / "live"
    assert live.main(["--env", str(served["root"] / "env.serve.yaml"), "--out", str(out)]) == 0
    (test,) = storage.read_json(out / "live.json")["experiments"]
    assert test["decision"] == "stop for the champion: the canary is worse"
    assert (test["canary"], test["champion"]) == (f"v{served['challenger']}", "v1")
    canary_keys = {r["distance"] for r, a in zip(records, arms, strict=True) if a == "canary"}
    assert test["unit"] == "distance" and test["labels_canary"] == len(canary_keys)
    assert "Online experiments: the canary against the champion" in (out / "index.html").read_text()
    settings = ServingSettings.from_params({"experiment": experiment}, "env").experiment
    found = evidence.experiment_evidence(archive, "1", served["challenger"], settings)
    assert found.judged and found.worse and "mSPRT" in str(found)
    held_out = promotion.gates.GateResult(pd.DataFrame(), True, True)
    decision = promotion.decide(held_out, [found])
    assert not decision.allowed and "worse" in decision.why


def test_a_canary_over_its_latency_limit_is_rolled_back_and_no_request_fails(served, tmp_path):
    records = _records(served, 200)
    experiment = {"share": 0.3, "max_p99_ms": 25}
    # the canary slowed by a drill, the champion at its own pace over the same time
    with Server(served["root"], "--drill-canary-ms", "40", archive=str(tmp_path / "archive"),
                latency_budget_ms=2000, experiment=experiment) as server:  # fmt: skip
        codes = [server.post(records[i % 200]).status_code for i in range(500)]
        found = _wait_json(server, "/models", lambda m: m["experiment"]["share"] == 0, 10)
    assert codes == [200] * 500
    why = found["experiment"]["rolled_back"]
    assert "p99 latency over its last" in why and "over its limit of 25 ms" in why
    assert "of its answers over it, the champion's" in why


def test_records_drawn_for_labelling_come_back_through_feedback(served, tmp_path, capsys):
    """`make label-queue` over a live archive, the CSV filled in with the true outcomes, and
    `make label-send`: every filled row is accepted, and the queue is then empty."""
    from nbmlops.commands import labels

    archive = tmp_path / "archive"
    records = _records(served, 200)
    truth = served["holdout"]["late"].iloc[:200].astype(int).tolist()
    env = str(served["root"] / "env.serve.yaml")
    with Server(served["root"], archive=str(archive), latency_budget_ms=2000,
                label_sample=0.1) as server:  # fmt: skip
        outcome = {}
        for start in range(0, 200, 10):
            answer = server.post(records[start : start + 10]).json()
            outcome |= {(answer["request_id"], i): truth[start + i] for i in range(10)}
        _wait_for(lambda: len(read_archive(archive, ["request_id", "record"])) == 200, 30,
                  "every answer in the archive")  # fmt: skip
        assert labels.main(["queue", "--env", env]) == 0
        table = pd.read_csv(archive / "label-queue.csv", dtype={"served_version": str})
        assert 8 <= len(table) <= 35 and set(table["served_version"]) == {"1"}  # 200 × 0.1
        assert set(table["score_decile"]) <= set(range(1, 11))
        table["outcome"] = [outcome[(r, i)] for r, i in zip(table["request_id"], table["record"],
                                                           strict=True)]  # fmt: skip
        table.to_csv(archive / "label-queue.csv", index=False)
        sent = labels.main(["send", str(archive / "label-queue.csv"), "--url", server.url])
        assert sent == 0 and f"accepted {len(table)}" in capsys.readouterr().out
        assert labels.main(["queue", "--env", env]) == 0
        assert "0 wait for an outcome" in capsys.readouterr().out
    found = [json.loads(line) for line in (archive / "labels.jsonl").read_text().splitlines()]
    assert {(r["request_id"], r["record"]): r["outcome"] for r in found} == {
        (r, i): outcome[(r, i)] for r, i in zip(table["request_id"], table["record"], strict=True)
    }
