"""nbval on the notebooks rendered with their parameters, products pointed at a scratch folder."""

import re

import nbformat
import pytest

from nbmlops import storage
from nbmlops.commands import nbcheck
from tests.conftest import PROJECT

pytestmark = [pytest.mark.pipeline, pytest.mark.xdist_group("build")]


def test_notebooks_rerun_with_the_outputs_the_build_showed(ci_build, tmp_path):
    watched = [ci_build.reports / "metrics.json", ci_build.products / "data" / "manifest.json"]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in watched}
    notebooks = nbcheck.render(ci_build.project, "env.ci.yaml", tmp_path)
    names = [p.name.split("-", 1)[1] for p in notebooks]
    assert names[0] == "ingest.ipynb" and len(names) == 9
    assert set(names[1:3]) == {"quality.ipynb", "features.ipynb"}  # each after ingest alone
    ingest = nbformat.read(notebooks[0], as_version=4)
    checked = [c for c in ingest.cells if "NBVAL_CHECK_OUTPUT" in c.source]
    assert checked and checked[0].outputs, "outputs of the build are kept for comparison"
    injected = next(c for c in ingest.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert str(tmp_path) in injected.source and str(ci_build.products) not in injected.source

    done = nbcheck.run_nbval(notebooks, tmp_path, PROJECT / "nbval_sanitize.cfg")
    assert done.returncode == 0, done.stdout[-5000:]
    assert re.search(r"\b\d+ passed\b", done.stdout)
    scratch_tests = storage.read_json(tmp_path / "reports" / "monitoring" / "tests.json")
    assert len(scratch_tests["batches"]) == 10
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in watched} == before


def test_nbval_catches_a_changed_output(ci_build, tmp_path):
    notebooks = nbcheck.render(ci_build.project, "env.ci.yaml", tmp_path)
    ingest = nbformat.read(notebooks[0], as_version=4)
    cell = next(c for c in ingest.cells if "NBVAL_CHECK_OUTPUT" in c.source)
    data = cell.outputs[0]["data"]
    assert "336776" in data["text/plain"]
    for kind in data:
        data[kind] = data[kind].replace("336776", "999999")
    nbformat.write(ingest, notebooks[0])
    done = nbcheck.run_nbval(notebooks[:1], tmp_path, PROJECT / "nbval_sanitize.cfg")
    assert done.returncode != 0 and "Cell outputs differ" in done.stdout


def test_sanitizers_cover_timestamps_paths_and_addresses():
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(PROJECT / "nbval_sanitize.cfg")
    text = "at 2026-11-23T19:40:36+00:00 in /tmp/pytest-1/x.parquet obj at 0x7f3a2b4c5d60"
    for section in cfg.sections():
        text = re.sub(cfg[section]["regex"], cfg[section]["replace"], text)
    assert text == "at TIMESTAMP in TMPPATH obj at 0xADDRESS"
