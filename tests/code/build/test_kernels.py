"""A notebook's kernel that exits before it answers (a lost port race) is started again in a
build's workers, a bounded number of times; elsewhere papermill is left as it is."""

import json
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import nbformat
import papermill
import pytest

from nbmlops.build import cores, executor
from nbmlops.build.kernels import ATTEMPTS, DIED

#: A kernel that exits at once for its first `deaths` starts (the count kept in a file), as a
#: kernel that finds its port taken does, then starts as IPython's kernel.
LAUNCHER = """
import sys
from pathlib import Path
count = Path(sys.argv[1])
starts = int(count.read_text()) + 1 if count.exists() else 1
count.write_text(str(starts))
if starts <= int(sys.argv[2]):
    sys.exit("zmq.error.ZMQError: Address already in use")
from ipykernel.kernelapp import launch_new_instance
sys.argv = [sys.argv[0], *sys.argv[3:]]
launch_new_instance()
"""


def _kernel(tmp_path: Path, deaths: int) -> Path:
    """A kernel spec named `flaky` under tmp_path/jupyter; returns the file counting its starts."""
    spec = tmp_path / "jupyter" / "kernels" / "flaky"
    spec.mkdir(parents=True)
    (spec / "launch.py").write_text(LAUNCHER)
    count = tmp_path / "starts"
    argv = [sys.executable, str(spec / "launch.py"), str(count), str(deaths), "-f", "{connection_file}"]  # fmt: skip
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "flaky", "language": "python"}))  # fmt: skip
    return count


def _run(folder: str) -> str:
    """Execute a one-cell notebook on the flaky kernel; the cell's output."""
    source = Path(folder) / "in.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
    nbformat.write(nb, source)
    done = papermill.execute_notebook(str(source), str(Path(folder) / "out.ipynb"),
                                      kernel_name="flaky", progress_bar=False)  # fmt: skip
    return done.cells[0].outputs[0]["text"]


def _pool(initializer=None, initargs=()) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(1, mp_context=get_context("fork"), initializer=initializer,
                               initargs=initargs)  # fmt: skip


def test_a_builds_worker_starts_another_kernel_when_one_dies_before_it_answers(
    tmp_path, monkeypatch, capfd
):
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    count = _kernel(tmp_path, deaths=ATTEMPTS - 1)
    with _pool(executor._worker, (cores.LOWER_PRIORITY,)) as pool:
        assert pool.submit(_run, str(tmp_path)).result().strip() == "42"
    assert count.read_text() == str(ATTEMPTS)
    said = capfd.readouterr().out
    assert said.count("the notebook's kernel exited before it answered") == ATTEMPTS - 1
    assert f"(start 1 of {ATTEMPTS}); starting another" in said


def test_a_kernel_that_keeps_dying_fails_the_task_after_a_bounded_number_of_starts(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    count = _kernel(tmp_path, deaths=ATTEMPTS + 5)
    with _pool(executor._worker, (0,)) as pool, pytest.raises(RuntimeError, match=DIED):
        pool.submit(_run, str(tmp_path)).result()
    assert count.read_text() == str(ATTEMPTS)


def test_outside_a_builds_workers_papermill_is_left_as_it_is(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    count = _kernel(tmp_path, deaths=1)
    with _pool() as pool, pytest.raises(RuntimeError, match=DIED):
        pool.submit(_run, str(tmp_path)).result()
    assert count.read_text() == "1"
