"""Faults: a build SIGKILLed inside each task in turn, and builds started at the same time.

One project goes through a chain of builds, each killed (with every process of the build)
while the next task runs; the build after that must finish, and every product must be whole
and equal to what an uninterrupted build makes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from nbmlops import storage
from nbmlops.envfile import load_env
from nbmlops.registry.loading import load_version
from nbmlops.registry.store import Store
from nbmlops.registry.versions import CHALLENGER, alias_version, list_versions
from tests.conftest import BIN, copy_project, ploomber_build, run_env
from tests.pipeline.test_build import ran_tasks

pytestmark = [pytest.mark.pipeline, pytest.mark.xdist_group("faults")]

#: Where each build is killed, in the order a build reaches them; the train grid runs as one
#: step, and quality and features, which both start when ingest ends, as one (`KILLED`).
STEPS = ["ingest", "quality", "train", "evaluate", "score", "monitor", "index"]
#: The task whose end starts each task.
AFTER = {"quality": "ingest", "features": "ingest", "train": "features", "evaluate": "train",
         "score": "evaluate", "monitor": "score", "index": "monitor"}  # fmt: skip
#: The tasks a kill at each step lands in.
KILLED = {"quality": ("quality", "features")}
#: Seconds from a step's start to the kill. quality and features only read what ingest
#: admitted and take a fraction of a second, so the kill must come sooner to land inside them.
KILL_AFTER = {"quality": 0.05}
LEFTOVER = (storage.TMP, storage.STAGING, storage.OLD)


def _start(project: Path, *args: str) -> subprocess.Popen:
    env = run_env("env.ci.yaml")
    return subprocess.Popen(
        [str(BIN / "ploomber"), "build", *args], cwd=project, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def _notebooks(project: Path, step: str) -> list[Path]:
    return sorted((project / "products" / "ci" / "notebooks").glob(f"{step}*.ipynb"))


def _metadata(project: Path, step: str) -> list[Path]:
    if step == "index":
        return [project / "reports" / "ci" / ".index.html.metadata"]
    return [p.with_name(f".{p.name}.metadata") for p in _notebooks(project, step)]


def _finished_since(project: Path, step: str, since: float) -> bool:
    """Every task of the step (the grid has three) has finished in this build."""
    found = _metadata(project, step)
    return bool(found) and all(m.is_file() and m.stat().st_mtime >= since for m in found)


def _running(project: Path, step: str, since: float) -> bool:
    """The step's task has started in this build: the task before it has finished (the first
    step: the build holds the project's lock). A notebook executed in the worker process is
    written only when it ends, so its own file cannot tell."""
    if step not in AFTER:
        lock = project / "products" / "ci" / "build.lock"
        return lock.is_file() and lock.stat().st_mtime >= since and lock.stat().st_size > 0
    return _finished_since(project, AFTER[step], since)


def _wait_for(proc: subprocess.Popen, ready, limit: float = 600) -> None:
    deadline = time.monotonic() + limit
    while not ready():
        assert proc.poll() is None, (
            "the build ended before the task started:\n" + proc.stdout.read()
        )
        assert time.monotonic() < deadline, "the task did not start in time"
        time.sleep(0.02)


def _kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # the build and its workers; kernels exit on their own
    proc.wait()
    proc.stdout.close()


def _whole(project: Path) -> int:
    """Open every product the way its reader would; returns how many were checked."""
    checked = 0
    for folder in ("products", "reports", "data"):
        for path in (project / folder).rglob("*"):
            assert not path.name.endswith(LEFTOVER), f"partial write left behind: {path}"
            if not path.is_file() or path.name.startswith("."):
                continue
            if path.suffix == ".parquet":
                pd.read_parquet(path)
            elif path.suffix in {".json", ".ipynb"}:
                json.loads(path.read_text(encoding="utf-8"))
            elif path.suffix == ".html":
                assert path.read_text(encoding="utf-8").rstrip().endswith("</html>"), path
            elif path.suffix == ".pkl":
                storage.read_pickle(path)
            checked += 1
    return checked


def _results(project: Path) -> dict:
    products = project / "products" / "ci"
    return {
        "frames": {
            name: pd.read_parquet(products / "data" / f"{name}.parquet")
            for name in ("train", "holdout", "batches")
        },  # fmt: skip
        "scores": pd.read_parquet(products / "scoring" / "scores.parquet"),
        "candidates": storage.read_json(project / "reports" / "ci" / "metrics.json")["candidates"],
        "drift": [
            (b["batch"], b["drift_share"], b["status"])
            for b in storage.read_json(project / "reports" / "ci" / "monitoring" / "tests.json")[
                "batches"
            ]
        ],
    }


def test_killed_in_every_task_then_rebuilt_whole_and_builds_never_overlap(tmp_path):
    project = copy_project(tmp_path / "project")
    killed_in = []
    for step in STEPS:
        since = time.time() - 0.01
        build = _start(project)
        _wait_for(build, lambda: _running(project, step, since))  # noqa: B023
        time.sleep(KILL_AFTER.get(step, 0.3))
        _kill(build)
        for task in KILLED.get(step, (step,)):
            assert not _finished_since(project, task, since), f"{task} finished before the kill"
        killed_in.append(step)
    assert killed_in == STEPS

    done = ploomber_build(project)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert _whole(project) > 30
    store = Store.from_params(load_env(project / "env.ci.yaml")["mlflow"])
    versions = list_versions(store)
    assert len(versions) >= 1 and versions["sha256"].str.len().eq(12).all()
    challenger = alias_version(store, CHALLENGER)
    assert load_version(store, challenger) is not None  # hash verified on load
    after_faults = _results(project)

    # The same project rebuilt from scratch. A second build started meanwhile is refused;
    # a third, allowed to wait, waits for it and then finds nothing left to do.
    since = time.time() - 0.01
    fresh = _start(project, "--force")
    _wait_for(fresh, lambda: _running(project, "features", since))
    refused = ploomber_build(project)
    out = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "another build of this project is running" in out, out[-2000:]
    assert f"pid {fresh.pid} on" in out
    waiting = ploomber_build(project, "--env--build_lock_wait", "900")
    fresh_out = fresh.communicate(timeout=900)[0]
    assert fresh.returncode == 0, fresh_out[-3000:]
    assert waiting.returncode == 0, waiting.stdout[-2000:] + waiting.stderr[-2000:]
    assert "waiting for another build" in waiting.stdout
    assert not any(ran_tasks(waiting.stdout).values())  # it found everything up to date
    clean = _results(project)
    for name, frame in after_faults["frames"].items():
        pd.testing.assert_frame_equal(frame, clean["frames"][name], obj=name)
    versions = ["served_version"]  # the rebuild registered a new version of the same model
    pd.testing.assert_frame_equal(after_faults["scores"].drop(columns=versions),
                                  clean["scores"].drop(columns=versions), obj="scores")  # fmt: skip
    assert after_faults["candidates"].keys() == clean["candidates"].keys()
    for model, metrics in clean["candidates"].items():
        assert after_faults["candidates"][model] == pytest.approx(metrics), model
    assert after_faults["drift"] == clean["drift"]
