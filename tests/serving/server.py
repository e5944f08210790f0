"""`nbmlops-serve` started as a real process on a free loopback port, stopped with SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import yaml

from tests.conftest import BIN, run_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The service of the project in `root`, its env file's `serving` block set from `serving`."""

    def __init__(self, root: Path, *args: str, env_file: str = "env.ci.yaml", **serving):
        self.root, self.port = root, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = yaml.safe_load((root / env_file).read_text())
        env["serving"] = {"archive": str(root / "archive"), "poll_seconds": 0.2} | serving
        (root / "env.serve.yaml").write_text(yaml.safe_dump(env))
        self.args = [str(BIN / "python"), "-m", "nbmlops.serve", "--env", "env.serve.yaml", "--port",
                     str(self.port), *args]  # fmt: skip
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def __enter__(self) -> Server:
        self.log_file = (self.root / f"serve-{self.port}.log").open("w")
        self.proc = subprocess.Popen(self.args, cwd=self.root, env=run_env(),
                                     stdout=self.log_file, stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 90
        while True:
            assert self.proc.poll() is None, "the service stopped:\n" + self.log()
            try:
                if self.client.get("/ready").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the service was not ready within 90 s"
            time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        self.client.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.log_file.close()

    def log(self) -> str:
        return Path(self.log_file.name).read_text()

    def get(self, path: str) -> httpx.Response:
        return self.client.get(path)

    def post(self, body) -> httpx.Response:
        return self.client.post("/predict", json=body)

    def post_raw(self, raw: bytes) -> httpx.Response:
        return self.client.post("/predict", content=raw)
