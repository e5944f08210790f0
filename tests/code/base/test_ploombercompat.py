"""Ploomber behind one wall: its private parts used in one module, no stack frame walked, and
what the workarounds rely on."""

import re
from pathlib import Path

import pytest


def test_the_pipelines_function_tasks_are_short_for_ploombers_differ():
    """Ploomber normalises a function task's source with autopep8 for each of its products to
    decide whether it changed; a long one cost 2.5 s of every no-op rebuild."""
    import inspect

    from ploomber.spec import DAGSpec
    from ploomber.tasks import PythonCallable

    root = Path(__file__).resolve().parents[3]
    dag = DAGSpec(str(root / "pipeline.yaml"), env=str(root / "env.ci.yaml")).to_dag()
    functions = [t.source.primitive for t in dag.values() if isinstance(t, PythonCallable)]
    assert functions, "the pipeline has a function task (the index)"
    for function in functions:
        assert len(inspect.getsource(function)) < 600, function.__qualname__


@pytest.mark.parametrize(
    ("argv", "forced"),
    [(["/venv/bin/ploomber", "build", "--force"], True),
     (["/venv/bin/ploomber", "build", "--env--seed", "1", "-f"], True),
     (["/venv/bin/ploomber", "build", "--env--seed", "1"], False),
     (["/venv/bin/ploomber", "task", "score", "--force"], False),
     (["/venv/bin/python", "-m", "pytest", "-f"], False)],
)  # fmt: skip
def test_a_forced_build_is_read_off_ploombers_command_line(monkeypatch, argv, forced):
    from nbmlops import ploombercompat

    monkeypatch.setattr("sys.argv", argv)
    assert ploombercompat.build_forced() is forced


def test_ploombers_private_parts_are_used_in_one_module_and_no_frame_is_walked():
    """Ploomber behind one wall: outside `ploombercompat`, the package imports only Ploomber's
    documented modules, and nothing reads the call stack."""

    public = {"ploomber", "ploomber.spec", "ploomber.constants", "ploomber.exceptions",
              "ploomber.executors", "ploomber.tasks", "ploomber.products"}  # fmt: skip
    package = Path(__file__).resolve().parents[3] / "src" / "nbmlops"
    for path in package.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"currentframe|_getframe|f_back|f_locals", text), path
        if path.name == "ploombercompat.py":
            continue
        used = set(re.findall(r"^\s*(?:from|import) (ploomber[\w.]*)", text, re.M))
        assert used <= public, f"{path.relative_to(package)} imports {used - public}"
