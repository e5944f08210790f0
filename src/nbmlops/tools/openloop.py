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


async def drive(url: str, bodies: list[str], rate: float, seconds: float, connections: int,
                fmt: str = "nbmlops") -> dict:  # fmt: skip
    """Send `rate` requests a second for `seconds` over at most `connections` connections."""
    host, port = url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
    method, path = FORMATS[fmt][:2]
    idle: asyncio.Queue = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(None)  # a free slot; the connection opens on first use
    latencies: list[float] = []
    failures: Counter = Counter()
    last = [0.0]

    async def one(due: float, body: bytes) -> None:
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
                failures[f"HTTP {status}"] += 1
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            failures[type(exc).__name__] += 1
        finally:
            if not keep and conn is not None:
                conn[1].close()
            idle.put_nowait(conn if keep else None)
        now = time.perf_counter()
        latencies.append(now - due)
        last[0] = max(last[0], now)

    encoded = cycle([b.encode() for b in bodies])
    start = time.perf_counter() + 0.05
    pending = []
    for i in range(max(1, int(rate * seconds))):
        due = start + i / rate
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        pending.append(asyncio.ensure_future(one(due, next(encoded))))
    await asyncio.gather(*pending)
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
    args = parser.parse_args(argv)
    bodies = request_bodies(json.loads(args.payload.read_text(encoding="utf-8")), args.format)
    try:
        import uvloop

        run = uvloop.run
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn's standard extras
        run = asyncio.run
    result = run(drive(args.url, bodies, args.rate, args.seconds, args.connections,
                       args.format))  # fmt: skip
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
