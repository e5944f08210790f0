"""`nbmlops-serve` started as a real process on a free loopback port, stopped with SIGTERM."""

from __future__ import annotations

from pathlib import Path

import httpx
import yaml

from nbmlops.tools.loadtest import Process, free_port
from tests.conftest import BIN, run_env


class Server:
    """The service of the project in `root`, its env file's `serving` block set from `serving`."""

    def __init__(self, root: Path, *args: str, env_file: str = "env.ci.yaml",
                 environ: dict[str, str] | None = None, **serving):  # fmt: skip
        self.root, self.port, self.environ = root, free_port(), environ or {}
        self.url = f"http://127.0.0.1:{self.port}"
        env = yaml.safe_load((root / env_file).read_text())
        env["serving"] = {"archive": str(root / "archive"), "poll_seconds": 0.2} | serving
        (root / "env.serve.yaml").write_text(yaml.safe_dump(env))
        self.args = [str(BIN / "python"), "-m", "nbmlops.serving.service", "--env",
                     str(root / "env.serve.yaml"), "--port", str(self.port), *args]  # fmt: skip

    def __enter__(self) -> Server:
        log = self.root / f"serve-{self.port}.log"
        self.process = Process(self.args, self.port, "/ready", log, run_env() | self.environ)
        self.client = httpx.Client(base_url=self.url, timeout=30)
        return self

    def __exit__(self, *exc) -> None:
        self.client.close()
        self.process.stop()

    def get(self, path: str) -> httpx.Response:
        return self.client.get(path)

    def post(self, body) -> httpx.Response:
        return self.client.post("/predict", json=body)

    def post_raw(self, raw: bytes, kind: str = "application/json", **headers) -> httpx.Response:
        return self.client.post("/predict", content=raw, headers={"content-type": kind} | headers)
