"""Shared helpers: a throw-away copy of the project and one CI build shared by the slow tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
PROJECT_FILES = [
    "pipeline.yaml",
    "env.yaml",
    "env.ci.yaml",
    "notebooks",
    "contracts",
    "model",
    "requirements.lock",
]
BIN = Path(sys.executable).parent


def copy_project(dest: Path) -> Path:
    """The pipeline's own files in `dest`, so a build there never touches the real products."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = PROJECT / name
        if src.is_dir():
            shutil.copytree(
                src, dest / name, ignore=shutil.ignore_patterns("*.ipynb", "__pycache__")
            )
        else:
            shutil.copy2(src, dest / name)
    return dest


def run_env() -> dict[str, str]:
    """The environment of a build a test starts: never a user's shared MLflow server."""
    outside = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return {
        **outside,
        "PLOOMBER_STATS_ENABLED": "false",
        "MPLBACKEND": "Agg",
        "PLOOMBER_VERSION_CHECK_DISABLED": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }


def ploomber_build(project: Path, *args: str, env_file: str = "env.ci.yaml"):
    """`ploomber build` in `project` as a user runs it; returns the finished process."""
    env = run_env() | {"PLOOMBER_ENV_FILENAME": env_file}
    return subprocess.run(
        [str(BIN / "ploomber"), "build", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@dataclass
class Build:
    project: Path
    log: str

    @property
    def products(self) -> Path:
        return self.project / "products"

    @property
    def reports(self) -> Path:
        return self.project / "reports"


@pytest.fixture(scope="session")
def ci_build(tmp_path_factory) -> Build:
    """One full build with env.ci.yaml in a temporary copy of the project.

    With NBMLOPS_BUILD_DIR set (`make gates` does), read that finished build instead.
    """
    if os.environ.get("NBMLOPS_BUILD_DIR"):
        return Build(Path(os.environ["NBMLOPS_BUILD_DIR"]), "")
    project = copy_project(tmp_path_factory.mktemp("ci-build"))
    done = ploomber_build(project)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return Build(project, done.stdout + done.stderr)
