"""The project's own contract: one lock, thin notebooks, lint-clean code, Jupyter settings."""

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))
#: What a hard-coded path looks like: a folder, a file with a data or model extension.
PATH = re.compile(r"(^\.{0,2}/|(^|/)(products|reports|data|mlruns)/|\.(parquet|csv|json|pkl|ipynb|"
                  r"html|yaml|db)$)")  # fmt: skip


def test_environment_yml_installs_the_same_lock_on_the_same_python():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert pip == ["-r requirements.lock"]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires.startswith(">=3.11")


def test_lock_pins_every_dependency_with_hashes():
    lock = (ROOT / "requirements.lock").read_text()
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", lock, re.M)
    names = {n.lower().replace("_", "-") for n, _ in pins}
    assert len(pins) > 100
    assert lock.count("--hash=sha256:") >= len(pins)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["dev"]
    for requirement in declared:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement)[0].lower().replace("_", "-")
        assert name in names, f"{name} is declared but not in requirements.lock"
    versions = dict((n.lower(), v) for n, v in pins)
    assert int(versions["pandas"].split(".")[0]) < 3
    assert tuple(map(int, versions["networkx"].split(".")[:2])) < (3, 6)
    assert int(versions["notebook"].split(".")[0]) < 7


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_show_the_work_and_leave_the_machinery_to_the_package(path):
    """A notebook is its parameters cell, then calls into the package and what a person wants
    to see: no functions or classes, no file paths or file writes of its own (every path
    comes from its parameters), and no registry calls (MLflow is the package's)."""
    text = path.read_text()
    assert '# %% tags=["parameters"]' in text
    tree = ast.parse(text)
    defs = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)]
    assert not defs, f"{path.name} defines {[d.name for d in defs]}; move them to src/"
    rest = text.split('# %% tags=["parameters"]', 1)[1]
    after = ast.parse(rest[rest.index("\n# %%") :])  # the cells after the parameters
    paths = [n.value for n in ast.walk(after) if isinstance(n, ast.Constant)
             and isinstance(n.value, str) and PATH.search(n.value)]  # fmt: skip
    assert not paths, f"{path.name} hard-codes paths {paths}; take them from its parameters"
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)
                for a in (n.names if isinstance(n, ast.Import) else [ast.alias(n.module or "")])}  # fmt: skip
    assert not imported & {"mlflow", "os", "shutil", "pickle", "joblib"}, imported
    called = {n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", "")
              for n in ast.walk(after) if isinstance(n, ast.Call)
              and getattr(getattr(n.func, "value", None), "id", "") != "storage"}  # fmt: skip
    writes = called & {"open", "to_parquet", "to_csv", "to_json", "write_text", "write_bytes",
                       "dump", "savefig", "log_model", "set_registered_model_alias"}  # fmt: skip
    assert not writes, f"{path.name} writes files itself ({writes}); the package's storage does"


def test_pipeline_names_only_existing_notebooks_and_functions():
    spec = yaml.safe_load((ROOT / "pipeline.yaml").read_text())
    for task in spec["tasks"]:
        source = task["source"]
        if source.endswith(".py"):
            assert (ROOT / source).is_file()
        else:
            module, func = source.rsplit(".", 1)
            assert hasattr(__import__(module, fromlist=[func]), func)


def test_env_files_have_the_same_keys():
    full = yaml.safe_load((ROOT / "env.yaml").read_text())
    ci = yaml.safe_load((ROOT / "env.ci.yaml").read_text())
    assert full.keys() == ci.keys() and full["data"].keys() == ci["data"].keys()
    assert ci["data"]["sample_frac"] < full["data"]["sample_frac"] == 1.0


def test_jupyter_uses_jupytext_contents_manager():
    config = (ROOT / ".jupyter" / "jupyter_server_config.py").read_text()
    assert 'contents_manager_class = "jupytext.TextFileContentsManager"' in config


def test_no_notebook_outputs_or_ipynb_committed():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [f for f in tracked if f.endswith(".ipynb")]


def test_ruff_lint_and_format_are_clean():
    ruff = [sys.executable, "-m", "ruff"]
    paths = ["src", "tests", "notebooks", "features"]
    check = subprocess.run([*ruff, "check", *paths], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    fmt = subprocess.run(
        [*ruff, "format", "--check", *paths], cwd=ROOT, capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make build" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_a_users_data_and_what_builds_keep_of_it_stay_out_of_git():
    paths = ["data/churn.csv", "data/raw/churn/source-0a1b/data.parquet", "data/scored/x.parquet",
             "data/requests/churn/part-1.parquet"]  # fmt: skip
    found = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=ROOT,
                           capture_output=True, text=True)  # fmt: skip
    assert found.stdout.split() == paths
    assert subprocess.run(["git", "ls-files", "data"], cwd=ROOT, capture_output=True,
                          text=True).stdout == ""  # fmt: skip


def test_no_source_file_is_ignored_by_git():
    """An ignore rule meant for a user's data must not hide the package's own files."""
    sources = [str(p.relative_to(ROOT)) for folder in ("src", "notebooks", "tests", "features")
               for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts]  # fmt: skip
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *sources], cwd=ROOT,
                             capture_output=True, text=True).stdout.split()  # fmt: skip
    assert sources and ignored == []
