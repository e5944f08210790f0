"""An open-loop load generator for `make load`: requests leave at fixed times whatever the answers
do, and each one's latency runs from the time it was due to the last byte of its answer.

    python -m nbmlops.tools.openloop URL PAYLOAD [--rate 200] [--seconds 30] [--connections 20]
                                     [--format nbmlops|mlflow|health]

Locust's users send their next request only after an answer and share one process of gevent
greenlets with its statistics; on loopback on a small machine that bookkeeping is part of every
figure it reports. This client is one asyncio loop writing raw HTTP/1.1 on keep-alive
connections, so what it measures is mostly the server. A request due while every connection is
busy waits for one, and the wait counts: a slow server cannot hide its queue (no coordinated
omission). Prints one JSON object with the fields `nbmlops.tools.loadtest.locust` returns.

With `--window S` (the soak, `nbmlops.tools.soak`) it prints one such object per S seconds of
due times as soon as that window's requests are all answered, each with its `window` number and
`at` (seconds from the start), and keeps only the windows still open: its own memory stays flat
however long it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from itertools import cycle
from pathlib import Path

#: Seconds a request may take before it counts as failed (and its connection is dropped).
TIMEOUT_SECONDS = 10.0
#: Per format: method, path, and how one record becomes a request body.
FORMATS = {
    "nbmlops": ("POST", "/predict", lambda r: r),
    "mlflow": ("POST", "/invocations", lambda r: {"dataframe_records": [r]}),
    "health": ("GET", "/health", None),
}


def request_bodies(records: list[dict], fmt: str) -> list[str]:
    """The body of each request for `records` in `fmt` (one record per request)."""
    wrap = FORMATS[fmt][2]
    return [json.dumps(wrap(r)) for r in records] if wrap else [""]


def _request(method: str, path: str, host: str, body: bytes) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
    if method == "POST":
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, keep the connection) of one whole HTTP/1.1 answer read from `reader`."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = dict(h.lower().split(":", 1) for h in head[1:] if ":" in h)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    if headers.get("transfer-encoding") == "chunked":
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")
    else:
        await reader.readexactly(int(headers.get("content-length", 0)))
    return status, headers.get("connection") != "close"


class Windows:
    """Latencies and failures per window of due times; a window is handed to `report` once
    every request due in it has its answer (or has failed), and then forgotten."""

    def __init__(self, start: float, seconds: float, report):
        self.start, self.seconds, self.report = start, seconds, report
        self.open: dict[int, tuple[list[float], Counter, list[int]]] = {}
        self.sending = 0  # the window of the request sent last: those before it are whole

    def sent(self, offset: float) -> int:
        """The window of a request due `offset` seconds after the start."""
        k = int(offset / self.seconds + 1e-9)
        self.open.setdefault(k, ([], Counter(), [0]))[2][0] += 1
        self.sending = k
        return k

    def done(self, k: int, latency: float, failure: str | None) -> None:
        latencies, failures, pending = self.open[k]
        latencies.append(latency)
        if failure:
            failures[failure] += 1
        pending[0] -= 1
        self.close()

    def close(self, final: bool = False) -> None:
        """Report, in order, the windows whose every request was sent and answered."""
        for k in sorted(self.open):
            latencies, failures, pending = self.open[k]
            if not (final or k < self.sending) or pending[0]:
                return
            del self.open[k]
            self.report(summary(latencies, failures, self.seconds)
                        | {"window": k, "at": round((k + 1) * self.seconds, 3)})  # fmt: skip


async def drive(
    url: str,
    bodies: list[str],
    rate: float,
    seconds: float,
    connections: int,
    fmt: str = "nbmlops",
    window: float | None = None,
    report=None,
) -> dict:
    """Send `rate` requests a second for `seconds` over at most `connections` connections;
    with a `window`, `report` gets each window's figures as it closes (see `Windows`)."""
    host, port = url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
    method, path = FORMATS[fmt][:2]
    idle: asyncio.Queue = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(None)  # a free slot; the connection opens on first use
    latencies: list[float] = []
    failures: Counter = Counter()
    last = [0.0]
    start = time.perf_counter() + 0.05
    windows = Windows(start, window, report) if window else None

    async def one(due: float, body: bytes, k: int) -> None:
        failure = None
        conn = await idle.get()
        keep = False
        try:
            async with asyncio.timeout(TIMEOUT_SECONDS):
                if conn is None:
                    conn = await asyncio.open_connection(host, int(port))
                reader, writer = conn
                writer.write(_request(method, path, host, body))
                status, keep = await _answer(reader)
            if status != 200:
                failure = f"HTTP {status}"
        except Exception as exc:  # noqa: BLE001 - any failure is counted, by its kind
            failure = type(exc).__name__
        finally:
            if not keep and conn is not None:
                conn[1].close()
            idle.put_nowait(conn if keep else None)
            now = time.perf_counter()
            last[0] = max(last[0], now)
            if windows is not None:
                windows.done(k, now - due, failure)
            else:
                latencies.append(now - due)
                if failure:
                    failures[failure] += 1

    encoded = cycle([b.encode() for b in bodies])
    pending: set = set()
    for i in range(max(1, int(rate * seconds))):
        due = start + i / rate
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        k = windows.sent(i / rate) if windows is not None else 0
        task = asyncio.ensure_future(one(due, next(encoded), k))
        pending.add(task)  # held until done: a task nobody references may be collected
        task.add_done_callback(pending.discard)
    while pending:
        await asyncio.wait(set(pending))
    if windows is not None:  # every window was reported
        windows.close(final=True)
        return {}
    return summary(latencies, failures, last[0] - start)


def summary(latencies: list[float], failures: Counter, elapsed: float) -> dict:
    """The figures of one run, in milliseconds, as `loadtest.locust` reports them."""
    ordered = sorted(latencies)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    failed = sum(failures.values())
    return {"requests": len(ordered), "failures": failed,
            "throughput_rps": round((len(ordered) - failed) / elapsed, 1) if elapsed > 0 else 0.0,
            "p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": at(1.0),
            "failure_kinds": [f"{n}× {kind}" for kind, n in failures.most_common(5)]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the server, http://host:port")
    parser.add_argument("payload", type=Path, help="JSON file holding a list of records")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--format", choices=sorted(FORMATS), default="nbmlops")
    parser.add_argument("--window", type=float, help="print the figures of every WINDOW seconds")
    args = parser.parse_args(argv)
    bodies = request_bodies(json.loads(args.payload.read_text(encoding="utf-8")), args.format)
    try:
        import uvloop

        run = uvloop.run
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn's standard extras
        run = asyncio.run

    def report(figures: dict) -> None:
        print(json.dumps(figures), flush=True)

    result = run(drive(args.url, bodies, args.rate, args.seconds, args.connections,
                       args.format, args.window, report))  # fmt: skip
    if not args.window:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
