"""`nbmlops-serve` started as a real process on a free loopback port, stopped with SIGTERM."""

from __future__ import annotations

from pathlib import Path

import httpx
import yaml

from nbmlops import storage
from nbmlops.tools.loadtest import Process, free_port
from tests.conftest import BIN, PROJECT, run_env


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


def synthetic_project(root: Path, store, env_name: str = "env.synthetic.yaml") -> Path:
    """A project folder whose env file points at `store` (where tests.code.registry's Builder
    registers models of its synthetic data), with that data's feature spec and held-out rows
    where a build leaves them: what the service needs besides the registry."""
    import shutil

    from tests.code.registry.conftest import SPEC, make_data

    root.mkdir(parents=True, exist_ok=True)
    for folder in ("contracts", "model"):  # the contract and the gate files
        shutil.copytree(PROJECT / folder, root / folder)
    env = yaml.safe_load((PROJECT / "env.ci.yaml").read_text())
    env["mlflow"] = {"tracking_uri": store.tracking_uri, "artifact_root": store.artifact_root,
                     "model_name": store.model_name}  # fmt: skip
    env["baseline"] = str(root / "baseline.json")
    (root / env_name).write_text(yaml.safe_dump(env))
    data = root / "products" / "ci" / "data"
    data.mkdir(parents=True)
    storage.write_json(data / "features.json", SPEC.to_dict())
    make_data(200, 5).to_parquet(data / "holdout.parquet")
    return root / env_name
