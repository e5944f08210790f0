"""nbval on the pipeline's notebooks, safely: products point at a scratch folder.

Each notebook task is rendered with the env file's parameters, except that products, reports,
stores and the MLflow registry move to `scratch`. Where a build already executed the notebook,
its outputs are kept, so nbval compares the cells marked `# NBVAL_CHECK_OUTPUT` with what the
build showed (after the sanitizers in nbval_sanitize.cfg); the other cells must simply run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import nbformat

from .. import session
from ..envfile import load_env

INJECTED = "injected-parameters"


def scratch_env(project: Path, env_file: str, scratch: Path) -> dict:
    """The env file's values with every place a build writes moved under `scratch`."""
    env = load_env(project / env_file)
    env["mlflow"] = {
        "tracking_uri": f"sqlite:///{scratch}/mlruns/mlflow.db",
        "artifact_root": str(scratch / "mlruns" / "artifacts"),
        "model_name": "nbval",
    }
    env |= {
        name: str(scratch / name)
        for name in ("products", "reports", "site", "raw_store", "scored_store")
    }
    return env


def render(project: Path, env_file: str, scratch: Path) -> list[Path]:
    """Notebooks ready for nbval, in build order, written to `scratch/rendered`."""
    from ploomber.spec import DAGSpec
    from ploomber.tasks import NotebookRunner

    built = DAGSpec(str(project / "pipeline.yaml"), env=str(project / env_file)).to_dag()
    dag = DAGSpec(str(project / "pipeline.yaml"), env=scratch_env(project, env_file, scratch))
    dag = dag.to_dag()
    dag.render(force=True, show_progress=False)
    out = scratch / "rendered"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(n for n in dag if isinstance(dag[n], NotebookRunner)):
        fresh = nbformat.reads(dag[name].source.nb_str_rendered, as_version=4)
        executed = Path(str(built[name].product["nb"]))
        nb = _with_outputs(fresh, executed)
        path = out / f"{i:02d}-{name}.ipynb"
        nbformat.write(nb, path)
        paths.append(path)
    return paths


def _with_outputs(fresh, executed: Path):
    """The executed notebook with the fresh (scratch) parameters, or the fresh one if none."""
    if not executed.is_file():
        return fresh
    old = nbformat.read(executed, as_version=4)
    injected = next(c for c in fresh.cells if INJECTED in c.metadata.get("tags", []))
    cells = [c for c in old.cells if INJECTED not in c.metadata.get("tags", [])]
    at = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])) + 1
    old.cells = cells[:at] + [injected] + cells[at:]
    return old


def run_nbval(notebooks: list[Path], cwd: Path, sanitize: Path | None = None):
    """`pytest --nbval-lax` over the notebooks, in order; returns the finished process."""
    args = [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q"]
    if sanitize is not None:
        args += ["--nbval-sanitize-with", str(sanitize)]
    env = os.environ | {session.BUILD: "1"}  # products where the scratch env says, as a build
    return subprocess.run([*args, *map(str, notebooks)], cwd=cwd, capture_output=True, text=True,
                          env=env)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="nbval on the rendered pipeline notebooks")
    parser.add_argument("--env", default="env.ci.yaml")
    parser.add_argument("--scratch", default="products/nbval")
    args = parser.parse_args(argv)
    project = Path.cwd()
    scratch = (project / args.scratch).resolve()
    notebooks = render(project, args.env, scratch)
    done = run_nbval(notebooks, scratch, project / "nbval_sanitize.cfg")
    print(done.stdout[-20000:], done.stderr[-5000:], sep="\n")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
