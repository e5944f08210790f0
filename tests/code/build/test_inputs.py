"""The inputs Ploomber does not track, read off a real rendered pipeline: which tasks see a change."""

from __future__ import annotations

import os

import pytest

from nbmlops.build import imports
from nbmlops.build.inputs import Hasher, Inputs, task_files
from tests.conftest import PROJECT as ROOT
from tests.conftest import copy_project, patients_env
from tests.helpers import breast_cancer_frame

ENV = "env.patients.yaml"


@pytest.fixture
def project(tmp_path, monkeypatch):
    project = copy_project(tmp_path / "project")
    breast_cancer_frame().to_csv(project / "patients.csv", index=False)
    (project / "incoming").mkdir()
    (project / "contracts" / "patients.yaml").write_text("tables:\n  data:\n    min_rows: 10\n")
    env = patients_env(project).replace(
        "contract: null", 'contract: "{{here}}/contracts/patients.yaml"'
    )
    (project / ENV).write_text(env)
    monkeypatch.chdir(project)
    monkeypatch.setenv("PLOOMBER_ENV_FILENAME", ENV)
    return project


def inputs(project) -> Inputs:
    from ploomber.spec import DAGSpec

    dag = DAGSpec(str(project / "pipeline.yaml"), env=str(project / ENV)).to_dag()
    dag.render(show_progress=False)
    return Inputs(dag, project / "products" / "inputs.json")


def test_each_kind_of_change_names_the_task_that_reads_it(project):
    first = inputs(project)
    assert first.changed() == {name: [] for name in first.now}  # no task has run: all stale
    first.record(list(first.now))
    assert inputs(project).changed() == {}

    data = project / "patients.csv"
    stat = data.stat()
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched, same bytes
    assert inputs(project).changed() == {}

    cases = [
        (
            project / "contracts" / "patients.yaml",
            lambda p: p.write_text("tables: {data: {min_rows: 20}}\n"),
        ),
        (data, lambda p: p.write_text(p.read_text().replace("malignant", "malignant ", 1))),
        (project / "incoming" / "2024-08.csv", lambda p: p.write_text("x\n1\n")),  # a new batch
        (project / "incoming" / "2024-08.csv", lambda p: p.unlink()),  # and gone again
    ]
    for path, change in cases:
        change(path)
        found = inputs(project)
        assert found.changed() == {"ingest": [str(path.resolve())]}, path
        found.record(["ingest"])


def test_a_task_depends_on_the_modules_its_code_imports():
    graph = imports.package_graph()
    train = imports.closure({"nbmlops.training.candidates", "nbmlops.metrics.scores"}, graph)
    assert {"nbmlops.spec", "nbmlops.errors", "nbmlops", "nbmlops.training"} <= train
    assert "nbmlops.monitoring.drift" not in train  # a change there leaves training as it is
    evaluation = imports.closure({"nbmlops.training.evaluation"}, graph)
    assert {"nbmlops.monitoring.drift", "nbmlops.registry.store"} <= evaluation
    # an import inside a function counts: the index task imports drift only when it runs
    assert "nbmlops.monitoring.drift" in imports.closure({"nbmlops.reports.index"}, graph)
    notebook = imports.file_imports(imports.PACKAGE.parents[1] / "notebooks" / "monitor.py")
    assert notebook == {"nbmlops.session", "nbmlops.storage", "nbmlops.monitoring.drift", "nbmlops.monitoring.monitor",
                        "nbmlops.monitoring.verdict", "nbmlops.spec"}  # fmt: skip


def test_a_file_is_hashed_again_only_when_its_size_or_mtime_changes(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("a\n1\n")
    hasher = Hasher.load(tmp_path / "cache.json")
    first = hasher(path)
    hasher.cache[str(path)][2] = "cached"  # what the cache says is what comes back...
    assert hasher(path) == "cached"
    path.write_text("a\n22\n")  # ...until the file changes
    assert hasher(path) not in {first, "cached"}
    assert hasher(tmp_path / "missing.csv") == "missing"


def test_the_function_task_reads_its_module_and_a_notebook_task_its_imports():
    from ploomber.spec import DAGSpec

    dag = DAGSpec(str(ROOT / "pipeline.yaml"), env=str(ROOT / "env.ci.yaml")).to_dag()
    dag.render(show_progress=False, force=True)
    graph = imports.package_graph()
    index = task_files(dag["index"], graph)
    assert imports.module_file("nbmlops.reports.index").resolve() in index
    monitor = task_files(dag["monitor"], graph)
    assert imports.module_file("nbmlops.monitoring.monitor").resolve() in monitor
    assert imports.module_file("nbmlops.reports.index").resolve() not in monitor
