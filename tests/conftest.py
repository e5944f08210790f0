"""Shared helpers: a throw-away copy of the project and one CI build shared by the slow tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from nbmlops.layout import Layout
from nbmlops.tools.bench import build_env, copy_pipeline

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def copy_project(dest: Path) -> Path:
    """The pipeline's own files in `dest`, so a build there never touches the real products."""
    return copy_pipeline(PROJECT, dest)


def run_env(env_file: str | None = None) -> dict[str, str]:
    """The environment of a build a test starts: never a user's shared MLflow server."""
    return build_env(env_file)


def ploomber_build(project: Path, *args: str, env_file: str = "env.ci.yaml", **variables: str):
    """`ploomber build` in `project` as a user runs it; returns the finished process."""
    env = run_env(env_file) | variables
    return subprocess.run(
        [str(BIN / "ploomber"), "build", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def make_build(project: Path, *args: str, env_file: str = "env.ci.yaml"):
    """A build as `make build` runs it (`nbmlops.build.run`): one clear message on failure."""
    return subprocess.run(
        [str(BIN / "python"), "-m", "nbmlops.build.run", "--env", env_file, *args],
        cwd=project, env=run_env(env_file), capture_output=True, text=True, timeout=900,
    )  # fmt: skip


@dataclass
class Build:
    project: Path
    log: str
    env_file: str = "env.ci.yaml"

    @property
    def layout(self) -> Layout:
        return Layout.from_env(self.project / self.env_file)

    @property
    def products(self) -> Path:
        return Path(self.layout.env["products"])

    @property
    def reports(self) -> Path:
        return self.layout.reports

    @property
    def candidates(self) -> list[str]:
        """The names of the candidates its env file declares, in the file's order."""
        return [candidate["name"] for candidate in self.layout.candidates]


@pytest.fixture(scope="session")
def ci_build(tmp_path_factory) -> Build:
    """One full build with env.ci.yaml in a temporary copy of the project.

    With NBMLOPS_BUILD_DIR set (`make gates` does), read that finished build instead.
    """
    if os.environ.get("NBMLOPS_BUILD_DIR"):
        return Build(Path(os.environ["NBMLOPS_BUILD_DIR"]), "")
    project = copy_project(tmp_path_factory.mktemp("ci-build"))
    done = make_build(project)  # as `make build` runs it: the build leaves its record
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return Build(project, done.stdout + done.stderr)


BYO_ENV = "env.patients.yaml"


#: The patients project's derived features: one ratio beside the input columns.
PATIENTS_FEATURES = """import pandas as pd


def derive(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.assign(area_per_perimeter=rows["mean_area"] / rows["mean_perimeter"])
"""


def patients_env(project: Path) -> str:
    """env.ci.yaml turned into an env for the patients CSV (no contract, its own model, its
    own derived feature: `features/patients.py`, written here).

    It runs its notebooks on ploomber-engine (the CI sample on papermill), so the suite builds
    with both notebook executors.
    """
    (project / "features").mkdir(exist_ok=True)
    (project / "features" / "patients.py").write_text(PATIENTS_FEATURES)
    return (
        (project / "env.ci.yaml")
        .read_text()
        .replace("source: nycflights13", "source: patients.csv")
        .replace("notebook_executor: papermill", "notebook_executor: ploomber-engine")
        .replace('contract: "{{here}}/contracts/nycflights13.yaml"', "contract: null")
        .replace("current_batches: null", 'current_batches: "incoming/*.csv"')
        .replace("target: late", "target: diagnosis")
        .replace("positive_label: null", "positive_label: malignant")
        .replace("time_column: null", "time_column: visit_date")
        .replace("reference_periods: 4", "reference_periods: 3")
        .replace("sample_frac: 0.1", "sample_frac: 1.0")
        .replace("model_name: flight-delay-ci", "model_name: patients")
        .replace("baseline.ci.json", "baseline.patients.json")
        .replace('/ci"', '/patients"')
        .replace("features/flights.py", "features/patients.py")
    )


@pytest.fixture(scope="session")
def byo_build(tmp_path_factory) -> Build:
    """A build on a user's own CSV with hostile values, plus one current batch file.

    The data is scikit-learn's breast-cancer table with markup and script in category values
    and in a column name; the current batch brings a category value training never saw.
    """
    from tests.helpers import HOSTILE, breast_cancer_frame

    project = copy_project(tmp_path_factory.mktemp("byo") / "project")
    df = breast_cancer_frame(hostile=True)
    df.to_csv(project / "patients.csv", index=False)
    (project / "incoming").mkdir()
    current = df.drop(columns=["diagnosis", "visit_date"]).head(120).copy()
    current.loc[current.index[:30], "clinic"] = HOSTILE[2]
    current.to_csv(project / "incoming" / "2024-07.csv", index=False)
    (project / BYO_ENV).write_text(patients_env(project))
    done = ploomber_build(project, env_file=BYO_ENV)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return Build(project, done.stdout + done.stderr, BYO_ENV)


@pytest.fixture(scope="session")
def registry_server(tmp_path_factory):
    """A real shared registry: `mlflow server` on PostgreSQL, on loopback, as
    `make registry-server` starts it (each test worker its own, on free ports)."""
    from nbmlops.commands import registryserver
    from nbmlops.tools.loadtest import free_port

    bindir = registryserver.find_postgres()
    assert bindir is not None, "no PostgreSQL: `make postgres` finds or installs it"
    home = tmp_path_factory.mktemp("registry-server")
    home.chmod(0o755)  # PostgreSQL runs as the postgres user when the tests run as root
    server = registryserver.Server(home, free_port(), free_port())
    state = registryserver.start(server, bindir)
    yield server
    registryserver.stop(home)
    shutil.rmtree(state["postgres_folder"], ignore_errors=True)  # outside `home` when root
