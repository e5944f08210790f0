"""Rebuilds without --force see what changed: a data file by content, the package's code a task
runs; and nothing else reruns."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.conftest import PROJECT, copy_project, patients_env, ploomber_build
from tests.helpers import breast_cancer_frame
from tests.pipeline.test_build import ran_tasks

pytestmark = [pytest.mark.pipeline, pytest.mark.xdist_group("changes")]
ENV = "env.patients.yaml"
EVERY = {"ingest", "validate", "features", "train-logreg", "train-hgb", "train-rf", "evaluate",
         "score", "monitor", "index"}  # fmt: skip


def test_rebuilds_rerun_exactly_what_a_change_affects(tmp_path):
    project = copy_project(tmp_path / "project")
    # The build runs a copy of the package, so the test can edit its code.
    shutil.copytree(PROJECT / "src" / "nbmlops", project / "src" / "nbmlops",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    breast_cancer_frame().to_csv(project / "patients.csv", index=False)
    (project / ENV).write_text(patients_env(project))

    def build() -> tuple[set[str], str]:
        done = ploomber_build(project, env_file=ENV, PYTHONPATH=str(project / "src"))
        out = done.stdout + done.stderr
        assert done.returncode == 0, out[-3000:]
        return {name for name, did in ran_tasks(done.stdout).items() if did}, out

    assert build()[0] == EVERY
    assert build()[0] == set()  # nothing changed
    data = project / "patients.csv"
    stat = data.stat()
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert build()[0] == set()  # touched: same bytes, nothing to redo

    drift = project / "src" / "nbmlops" / "monitoring" / "drift.py"
    drift.write_text(drift.read_text() + "\n# reviewed\n")
    ran, out = build()
    assert ran == {"evaluate", "score", "monitor", "index"}  # its importers and what follows
    assert f"monitor: its inputs changed: {drift.resolve()}" in out

    index = project / "src" / "nbmlops" / "reports" / "index.py"
    index.write_text(index.read_text() + "\n# reviewed\n")
    assert build()[0] == {"index"}

    data.write_text(data.read_text().replace("benign", "benign ", 1))  # one label, one byte
    ran, out = build()
    assert ran == EVERY and f"ingest: its inputs changed: {data.resolve()}" in out
