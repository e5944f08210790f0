"""A full disk during a build: the products on a small filesystem (a tmpfs, see
tests.code.smalldisk) that a ballast file fills before a build that must retrain a candidate.
The build stops with one clear message naming the file it could not write; every product of
the build before is as that build left it, no partial file is left, the registry and the
champion are untouched; when space returns the next build passes."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from nbmlops.layout import CANDIDATE_PLACEHOLDER, TRAIN_TASK, Layout
from nbmlops.registry.store import Store
from nbmlops.registry.versions import set_champion
from nbmlops.session import read_build
from tests.code.smalldisk import SmallDisk, fill
from tests.conftest import copy_project, run_env

pytestmark = [pytest.mark.pipeline, pytest.mark.xdist_group("build")]


def _files(folder) -> dict[str, str]:
    """Every file under `folder`, by its path there, with its content's hash."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def _products_of(layout: Layout, task: str, *keys: str) -> set[str]:
    """A task's products under the products' folder (of `keys`, or all), with Ploomber's
    metadata files beside them, by their paths there."""
    root = Path(layout.env["products"])
    found = layout.products[TRAIN_TASK if task.startswith("train-") else task]
    out = set()
    for key, path in found.items():
        path = Path(path.replace(CANDIDATE_PLACEHOLDER, task.removeprefix("train-")))
        if (key in keys or not keys) and path.is_relative_to(root):
            rel = path.relative_to(root)
            out |= {str(rel), str(rel.parent / f".{rel.name}.metadata")}
    return out


def _registry(env_file) -> tuple[list[str], dict[str, str]]:
    env = Layout.from_env(env_file).env
    store = Store.from_params(env["mlflow"], str(env_file))
    client = store.client()
    versions = sorted(str(v.version) for v in
                      client.search_model_versions(f"name='{store.model_name}'"))  # fmt: skip
    aliases = dict(client.get_registered_model(store.model_name).aliases)
    return versions, {k: str(v) for k, v in aliases.items()}


def test_a_full_disk_stops_the_build_with_one_message_and_loses_nothing(tmp_path):
    project = copy_project(tmp_path / "project")
    env_file = project / "env.ci.yaml"
    with SmallDisk(project / "products", "64m") as disk:

        def build():
            return disk.run([sys.executable, "-m", "nbmlops.build.run", "--env", env_file.name],
                            cwd=project, env=run_env(env_file.name), capture_output=True,
                            text=True, timeout=900)  # fmt: skip

        first = build()
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        products = disk.seen / "ci"
        env = Layout.from_env(env_file).env
        store = Store.from_params(env["mlflow"], str(env_file))
        challenger = _registry(env_file)[1]["challenger"]
        set_champion(store, challenger, [challenger])  # a champion the full disk must not move
        before, registry = _files(products), _registry(env_file)
        assert registry[1]["champion"] == challenger and len(before) > 20
        text = env_file.read_text()  # a change that retrains one candidate
        assert "params: {C: 1.0, max_iter: 1000}" in text
        env_file.write_text(text.replace("{C: 1.0,", "{C: 0.5,"))
        ballast = fill(disk.seen)

        full = build()
        assert full.returncode != 0
        said = full.stderr.strip().splitlines()
        failed = re.fullmatch(r"build failed in task '([\w-]+)':", said[0])
        assert failed, full.stderr[-3000:]
        assert said[1].startswith("no space left on device ") and "Traceback" not in full.stderr
        assert "none is left half-written" in full.stderr
        # the tasks that ran before the disk was found full wrote whole new products; the task
        # that failed left its data as they were, and only its executed notebook changed
        ran = re.findall(r"\] ([\w-]+): ran", full.stdout)
        layout = Layout.from_env(env_file)
        allowed = {
            ".cpu-seconds.lock",
            ".cpu-seconds.json",
            "build.lock",
            "inputs.json",
            ".inputs.cache.json",
        }  # the build's bookkeeping, each rewritten whole
        for task in ran:
            allowed |= _products_of(layout, task)
        notebook = _products_of(layout, failed[1], "nb")
        after = _files(products)
        assert set(after) == set(before)  # none lost, no partial file left behind
        changed = {path for path in before if after[path] != before[path]}
        assert changed <= allowed | notebook, changed - allowed - notebook
        assert not changed & (_products_of(layout, failed[1]) - notebook)
        for path in products.rglob("*"):  # every data product readable, as a whole
            if path.suffix in (".json", ".ipynb"):  # the failed task's notebook too
                json.loads(path.read_text())
            elif path.suffix == ".parquet":
                pq.read_metadata(path)
        versions, aliases = _registry(env_file)
        assert set(versions) >= set(registry[0]) and aliases["champion"] == challenger
        record = read_build(layout.reports)
        assert record["status"] == "failed" and record["kind"] == "DiskFull"

        ballast.unlink()  # space returns
        again = build()
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        assert failed[1] in re.findall(r"\] ([\w-]+): ran", again.stdout)  # it ran again
        assert set(_files(products)) >= set(before)
