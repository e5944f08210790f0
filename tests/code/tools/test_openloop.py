"""The open-loop load generator of `make load`, against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nbmlops.tools.openloop import drive, request_bodies


class Handler(BaseHTTPRequestHandler):
    """Answers after the server's `delay`; the body's "kind" picks how: plain, chunked,
    closing the connection, or failing."""

    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16  # each answer leaves in one write, flushed when it is done

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        time.sleep(self.server.delay)
        self.server.seen.append(self.path)
        kind = body.get("dataframe_records", [body])[0].get("kind", "plain")
        self.send_response(500 if kind == "fail" else 200)
        if kind == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b'{"ok":', b" true}"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        answer = b'{"ok": true}'
        self.send_header("Content-Length", str(len(answer)))
        if kind == "close":
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.delay, httpd.seen = 0.0, []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _url(httpd) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}"


def test_requests_due_while_the_server_is_busy_count_their_wait(server):
    # one connection, 50 ms an answer (20 a second), 40 due a second: each request waits for
    # the ones before it, and that wait is its latency too (a closed loop would show 50 ms)
    server.delay = 0.05
    result = asyncio.run(drive(_url(server), request_bodies([{}], "nbmlops"), rate=40,
                               seconds=1, connections=1))  # fmt: skip
    assert result["requests"] == 40 and result["failures"] == 0
    assert result["p50_ms"] > 300 and result["max_ms"] > 800
    assert 15 < result["throughput_rps"] < 25  # what the server can do, not what was offered
    assert server.seen == ["/predict"] * 40


def test_chunked_closing_and_failed_answers_are_read_and_counted(server):
    records = [{"kind": k} for k in ("plain", "chunked", "close", "fail")]
    result = asyncio.run(drive(_url(server), request_bodies(records, "mlflow"), rate=200,
                               seconds=0.2, connections=2, fmt="mlflow"))  # fmt: skip
    assert result["requests"] == 40 and server.seen == ["/invocations"] * 40
    assert result["failures"] == 10 and result["failure_kinds"] == ["10× HTTP 500"]
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"] < 1000


def test_a_server_that_is_gone_is_a_failure_not_a_hang():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = asyncio.run(drive(f"http://127.0.0.1:{port}", [""], rate=50, seconds=0.1,
                               connections=2, fmt="health"))  # fmt: skip
    assert result["requests"] == 5 and result["failures"] == 5
    assert result["failure_kinds"] == ["5× ConnectionRefusedError"]


def test_windowed_runs_report_each_window_once_in_order_and_keep_no_latencies(server):
    server.delay = 0.02  # answers outlast their window's end: a window waits for them
    seen = []
    result = asyncio.run(drive(_url(server), request_bodies([{}], "nbmlops"), rate=100,
                               seconds=1, connections=4, window=0.25,
                               report=seen.append))  # fmt: skip
    assert result == {}  # every figure went to its window
    assert [w["window"] for w in seen] == [0, 1, 2, 3]
    assert [w["at"] for w in seen] == [0.25, 0.5, 0.75, 1.0]
    assert [w["requests"] for w in seen] == [25] * 4 and all(w["failures"] == 0 for w in seen)
    assert all(w["p50_ms"] >= 20 for w in seen)
