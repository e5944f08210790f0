"""nbval on the notebooks rendered with their parameters, products pointed at a scratch folder."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ploomber.spec import DAGSpec
from ploomber.tasks import NotebookRunner

from nbmlops import storage
from tests.conftest import run_env

pytestmark = [pytest.mark.pipeline, pytest.mark.xdist_group("build")]


def render_notebooks(project: Path, scratch: Path) -> list[Path]:
    """Each notebook task's source with its parameters injected, in build order."""
    env = yaml.safe_load((project / "env.ci.yaml").read_text())
    env = {
        k: v.replace("{{here}}", str(project)) if isinstance(v, str) else v for k, v in env.items()
    }
    env["mlflow"] = {
        "tracking_uri": f"sqlite:///{scratch}/mlruns/mlflow.db",
        "artifact_root": str(scratch / "mlruns" / "artifacts"),
        "model_name": "nbval",
    }
    env |= {
        "scored_store": str(scratch / "scored"),
        "products": str(scratch / "products"),
        "reports": str(scratch / "reports"),
        "raw_store": str(scratch / "raw"),
    }
    spec = DAGSpec(str(project / "pipeline.yaml"), env=env)
    dag = spec.to_dag()
    dag.render(force=True, show_progress=False)
    out = scratch / "rendered"
    out.mkdir(parents=True)
    paths = []
    for i, name in enumerate(dag.topological_sort() if hasattr(dag, "topological_sort") else dag):
        task = dag[name]
        if isinstance(task, NotebookRunner):
            path = out / f"{i:02d}-{name}.ipynb"
            path.write_text(task.source.nb_str_rendered, encoding="utf-8")
            paths.append(path)
    return paths


def test_notebooks_run_top_to_bottom_under_nbval(ci_build, tmp_path):
    watched = [ci_build.reports / "metrics.json", ci_build.products / "data" / "manifest.json"]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in watched}
    notebooks = render_notebooks(ci_build.project, tmp_path)
    assert [p.name.split("-", 1)[1] for p in notebooks][:3] == [
        "ingest.ipynb",
        "validate.ipynb",
        "features.ipynb",
    ]
    assert len(notebooks) == 9
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            "-p",
            "no:cacheprovider",
            "-q",
            *map(str, notebooks),
        ],
        cwd=tmp_path,
        env=run_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-5000:]
    assert re.search(r"\b\d+ passed\b", done.stdout)
    scratch_tests = storage.read_json(tmp_path / "reports" / "monitoring" / "tests.json")
    assert len(scratch_tests["batches"]) == 10
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in watched} == before
