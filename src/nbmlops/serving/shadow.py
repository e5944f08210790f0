"""Shadow scoring and the request archive, in a process of their own beside the service.

The service hands each answered request to this process through a bounded queue and returns at
once; here every shadow model scores the same records, and each record, with every model's output
and latency, is appended to the archive (`archive.py`): on disk at once, in Parquet files rotated
by rows and by age. Each file holds the models' input columns, so monitoring reads the folder as
current batches: `current_batches: "data/requests/*.parquet"`.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import time

from ..registry.store import Store
from ..registry.versions import alias_version
from .archive import Archive, ArchiveSettings

STOP = None
#: Seconds the process goes on after SIGTERM or SIGINT, archiving what the service still hands
#: over while it finishes its requests in flight, before it writes its last file and exits.
TERM_SECONDS = 10.0


def archive_rows(message: dict, shadow_out: dict[str, dict]) -> list[dict]:
    """One archive row per record: inputs, the answer (the answering model's threshold; while
    an experiment runs, its champion and canary versions and the record's arm), and every
    shadow's output and latency. A request split
    between the arms comes as one message per arm, each with its records' places (`indices`).

    A latency is that of the model call that scored the record; `*_batch_rows` says how many
    records that call scored together.
    """
    rows = []
    indices = message.get("indices") or range(len(message["records"]))
    pair = message.get("experiment") or (None, None)  # champion and canary, while one runs
    for i, (index, record) in enumerate(zip(indices, message["records"], strict=True)):
        row = {"request_id": message["request_id"], "record": index,
               "received_at": message["received_at"], **record,
               "served_version": message["version"], "served_role": message["role"],
               "served_arm": message.get("arm", "champion"),
               "served_threshold": message.get("threshold"),
               "experiment_champion": pair[0], "experiment_canary": pair[1],
               "served_proba": float(message["proba"][i]), "served_ms": message["model_ms"],
               "served_batch_rows": message["batch_rows"],
               "fallback_reason": message["reason"]}  # fmt: skip
        for alias, out in shadow_out.items():
            row[f"{alias}_version"] = out["version"]
            row[f"{alias}_proba"] = float(out["proba"][i]) if out["proba"] is not None else None
            row[f"{alias}_ms"] = out["ms"]
            row[f"{alias}_batch_rows"] = out["rows"]
            row[f"{alias}_error"] = out["error"]
        rows.append(row)
    return rows


def shadow_outputs(messages: list[dict], to_frame, cache) -> list[dict[str, dict]]:
    """Per message, alias -> output: each shadow version scores all its records in one call."""
    from .rendezvous import score_records

    outs: list[dict[str, dict]] = [{} for _ in messages]
    wanted = {(a, v) for m in messages for a, v in m["shadows"].items()}
    for alias, version in sorted(wanted):
        mine = [i for i, m in enumerate(messages) if m["shadows"].get(alias) == version]
        records = [r for i in mine for r in messages[i]["records"]]
        start = time.perf_counter()
        try:
            proba = score_records(cache.get(version).model, records, to_frame)
            error = None
        except Exception as exc:  # noqa: BLE001 - a failing shadow is recorded, never raised
            proba, error = None, f"{type(exc).__name__}: {exc}"
        ms = (time.perf_counter() - start) * 1000
        at = 0
        for i in mine:
            n = len(messages[i]["records"])
            part = proba[at : at + n] if proba is not None else None
            outs[i][alias] = {"version": version, "proba": part, "error": error, "ms": ms,
                              "rows": len(records)}  # fmt: skip
            at += n
    return outs


def _take(inbox: mp.Queue, tick: float, max_records: int) -> tuple[list[dict], bool]:
    """The messages waiting (at least one, or none after `tick`), and whether STOP came."""
    try:
        first = inbox.get(timeout=tick)
    except queue.Empty:
        return [], False
    if first is STOP:
        return [], True
    found, records = [first], len(first["records"])
    while records < max_records:
        try:
            message = inbox.get_nowait()
        except queue.Empty:
            break
        if message is STOP:
            return found, True
        found.append(message)
        records += len(message["records"])
    return found, False


def worker(inbox: mp.Queue, outbox: mp.Queue, store: Store, spec: dict,
           archive: ArchiveSettings, shadow: bool, sample: list[dict], aliases=(),
           tick: float = 0.5, max_records: int = 1024) -> None:  # fmt: skip
    """Process main: score shadows, archive rows, report figures to the service every `tick`.

    Before its first report (`started`, which the service's /ready waits for) it opens the
    archive and loads the models the shadow `aliases` point at, so no record waits in memory
    for a start-up. It stops, after writing its last file, when the service hands it STOP,
    when the service is gone, or TERM_SECONDS after a SIGTERM or SIGINT: a Ctrl-C or a
    container's stop reaches the whole process group, and the service, finishing its requests
    in flight, still hands over their records meanwhile.
    """
    import signal

    from ..spec import FeatureSpec
    from .payload import RequestContract
    from .rendezvous import ModelCache, check_rows

    until = [float("inf")]  # when to stop, once a signal came

    def countdown(signum, frame):
        until[0] = min(until[0], time.monotonic() + TERM_SECONDS)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, countdown)
    parent = os.getppid()
    feature_spec = FeatureSpec.from_dict(spec)
    to_frame = RequestContract(feature_spec).frame
    cache = ModelCache(
        store, check_rows(feature_spec.columns, to_frame(sample) if sample else None)
    )
    log = Archive(archive)  # compacts what a process before it left behind
    for alias in aliases if shadow else ():
        version = alias_version(store, alias)
        try:
            cache.get(version) if version else None
        except Exception:  # noqa: BLE001 - scoring it will record the error
            pass
    report: dict = {"shadow": [], "bytes": 0}
    outbox.put(report | log.counts.take() | {"error": log.error, "started": True})
    last = time.monotonic()
    while True:
        messages, stop = _take(inbox, tick, max_records)
        outs = shadow_outputs(messages, to_frame, cache) if shadow else [{} for _ in messages]
        for message, out in zip(messages, outs, strict=True):
            report["shadow"] += [(a, o["version"], o["ms"], o["error"] is None)
                                 for a, o in out.items()]  # fmt: skip
            log.add(archive_rows(message, out))
            report["bytes"] += message.get("bytes", 0)
        log.tick()
        if stop or os.getppid() != parent or time.monotonic() > until[0]:
            break
        if time.monotonic() - last >= tick:
            outbox.put(report | log.counts.take() | {"error": log.error})
            report, last = {"shadow": [], "bytes": 0}, time.monotonic()
    log.close()
    outbox.put(report | log.counts.take() | {"error": log.error})


class ShadowProcess:
    """The worker process and its two queues, as the service sees them, with what was handed
    over and what the worker has accounted for (records on disk or dropped, and bytes)."""

    def __init__(self, store: Store, spec: dict, archive: ArchiveSettings,
                 shadow: bool, sample: list[dict], aliases=(),
                 queue_size: int = 20_000):  # fmt: skip
        ctx = mp.get_context("spawn")  # a clean interpreter: the service has threads running
        self.inbox: mp.Queue = ctx.Queue(queue_size)
        self.outbox: mp.Queue = ctx.Queue()
        self.process = ctx.Process(target=worker, name="nbmlops-shadow", daemon=True,
                                   args=(self.inbox, self.outbox, store, spec, archive,
                                         shadow, sample, tuple(aliases)))  # fmt: skip
        # `sent_*` change on the answering thread only, `done_*` on the one reading reports
        self.sent_records = self.sent_bytes = self.done_records = self.done_bytes = 0
        self.heard = time.monotonic()  # the worker's last report
        self.started = False  # its archive open and its shadow models loaded
        self.error: str | None = None  # why the archive cannot keep records, as last reported

    def start(self) -> None:
        self.heard = time.monotonic()
        self.process.start()

    def send(self, message: dict, size: int) -> bool:
        """Hand a request of `size` bytes over without waiting; False when the worker is too
        far behind."""
        try:
            self.inbox.put_nowait(message | {"bytes": size})
        except queue.Full:
            return False
        self.sent_records += len(message["records"])
        self.sent_bytes += size
        return True

    def backlog_bytes(self) -> int:
        """Bytes of requests handed over and not yet archived."""
        return self.sent_bytes - self.done_bytes

    def unaccounted(self) -> int:
        """Records handed over that the worker has not reported as archived or dropped."""
        return self.sent_records - self.done_records

    def reports(self) -> list[dict]:
        found = []
        while True:
            try:
                report = self.outbox.get_nowait()
            except queue.Empty:
                return found
            found.append(report)
            self.done_records += report["written"] + report["dropped"]
            self.done_bytes += report["bytes"]
            self.error, self.heard = report["error"], time.monotonic()
            self.started = self.started or report.get("started", False)

    def alive(self) -> bool:
        return self.process.is_alive()

    def stop(self, timeout: float = TERM_SECONDS) -> list[dict]:
        """Let the worker finish what it was handed and write its last file."""
        if self.process.is_alive():
            self.inbox.put(STOP)
        found = []
        deadline = time.monotonic() + timeout
        while self.process.is_alive() and time.monotonic() < deadline:
            found += self.reports()
            self.process.join(0.1)
        if self.process.is_alive():
            self.process.terminate()
        return found + self.reports()
