"""JupyterLab as `make lab` starts it: the .py notebooks open as notebooks, parameters injected."""

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from nbmlops.tools.loadtest import free_port
from tests.conftest import BIN, PROJECT, run_env

pytestmark = [pytest.mark.pipeline, pytest.mark.xdist_group("build")]
TOKEN = "test-token"


def _get(port: int, path: str) -> tuple[int, dict]:
    url = f"http://127.0.0.1:{port}{path}{'&' if '?' in path else '?'}token={TOKEN}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, json.loads(response.read())


@pytest.fixture(scope="module")
def lab(ci_build):
    port = free_port()
    env = run_env("env.ci.yaml") | {"JUPYTER_CONFIG_DIR": str(PROJECT / ".jupyter")}  # ENV=ci
    env.pop("NBMLOPS_BUILD", None)  # a person's Lab, whatever this test process made before
    server = subprocess.Popen(
        [str(BIN / "jupyter"), "lab", "--no-browser", "--allow-root", f"--port={port}",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.token={TOKEN}",
         f"--ServerApp.root_dir={ci_build.project}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                _get(port, "/api/status")
                break
            except OSError:
                assert server.poll() is None, server.stderr.read()
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not answer within 60 s")
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_file_browser_lists_notebooks(lab):
    status, listing = _get(lab, "/api/contents/notebooks")
    assert status == 200
    names = {item["name"]: item["type"] for item in listing["content"]}
    assert names["train.py"] == "notebook" and names["monitor.py"] == "notebook"


@pytest.mark.parametrize("name", sorted(p.name for p in (PROJECT / "notebooks").glob("*.py")))
def test_notebook_opens_with_parameters_injected(lab, ci_build, name):
    status, model = _get(lab, f"/api/contents/notebooks/{name}?type=notebook&content=1")
    assert status == 200 and model["type"] == "notebook"
    cells = model["content"]["cells"]
    tags = [c["metadata"].get("tags", []) for c in cells]
    position = next(i for i, t in enumerate(tags) if "injected-parameters" in t)
    assert "parameters" in tags[position - 1]
    injected = cells[position]["source"]
    assert f'"{ci_build.project}' in injected and "product = {" in injected
    # `make lab ENV=ci` injects the CI sample's env: the products of the build that exists
    assert str(ci_build.products) in injected and "/products/flights" not in injected
    assert Path(ci_build.project, "notebooks", name).read_text().count("injected-parameters") == 0


def test_a_py_notebook_opens_as_a_notebook_on_a_double_click(lab):
    status, settings = _get(lab, "/lab/api/settings/@jupyterlab/docmanager-extension:plugin")
    assert status == 200
    assert settings["settings"]["defaultViewers"]["python"] == "Jupytext Notebook"


def _state(build) -> dict[str, str]:
    """sha256 of every file of the build's products and reports, and its registry's versions."""
    from nbmlops import storage
    from nbmlops.registry.store import Store
    from nbmlops.registry.versions import list_versions

    files = {str(p): storage.sha256_file(p) for folder in (build.products, build.reports)
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "build.lock"}  # fmt: skip
    store = Store.from_params(build.layout.env["mlflow"])
    return files | {"registry": list_versions(store).to_json()}


@pytest.mark.parametrize("name", ["features.py", "evaluate.py"])
def test_a_notebook_run_in_lab_changes_no_product_and_registers_nothing(
    lab, ci_build, name, monkeypatch
):
    """Run top to bottom as a person does in Lab (a kernel of their own, the parameters Lab
    injected): it writes to a scratch folder it names, never to the build's products, reports
    or MLflow registry."""
    import nbformat
    from nbclient import NotebookClient

    from nbmlops import session

    monkeypatch.delenv(session.BUILD, raising=False)  # as a kernel Lab starts: not a build
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    before = _state(ci_build)
    _, model = _get(lab, f"/api/contents/notebooks/{name}?type=notebook&content=1")
    notebook = nbformat.from_dict(model["content"])
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(ci_build.project / "notebooks")}}).execute()  # fmt: skip
    said = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))  # fmt: skip
    assert f"Run outside a build: {name[:-3]} writes to " in said
    assert _state(ci_build) == before
