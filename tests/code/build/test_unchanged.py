"""A build with nothing to do, decided without Ploomber: every change a task could read goes to
Ploomber, and what no task reads does not."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

import pytest

from nbmlops.build import unchanged


def _project(root: Path) -> tuple[dict, dict]:
    """A project with its notebooks, env file, this env's products and reports, another
    project's products and a data file outside it; what `make build` compares, and the
    fields it keeps."""
    files = {
        "pipeline.yaml": "tasks: []\n", "env.x.yaml": "products: products/x\n",
        "notebooks/train.py": "# %%\nx = 1\n", "model/gates.yaml": "roc_auc: {min: 0.5}\n",
        "products/x/model.pkl": "model", "products/x/build.lock": "", "reports/x/index.html": "<p>",
        "reports/x/build.json": "{}", "products/other/model.pkl": "theirs",
        "data/incoming/2024-01.csv": "a\n1\n", "logs/build-x.log": "", "mlruns/mlflow.db": "",
        "data/2024-05.csv": "a\n1\n", "data/2024-06.csv": "a\n2\n",
        ".git/HEAD": "ref", "src/pkg/__pycache__/m.pyc": "",
    }  # fmt: skip
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    outside = root.parent / f"{root.name}-data.csv"
    outside.write_text("a,b\n1,2\n")
    (root / "data" / "current.csv").symlink_to("2024-05.csv")  # the source, a link to a month
    shared = root.parent / f"{root.name}-shared"  # notebooks kept elsewhere, linked in
    (shared / "score.py").parent.mkdir()
    (shared / "score.py").write_text("# %%\ny = 1\n")
    (root / "notebooks" / "shared").symlink_to(shared)
    named = unchanged.env_files({"source": str(root / "data" / "current.csv")})
    where = {"project": str(root),
             "outputs": [str(root / "products" / "x"), str(root / "reports" / "x")],
             "files": [str(outside), str(root / "env.x.yaml"), *named],
             "globs": [[str(root), "data/incoming/*.csv"]]}  # fmt: skip
    fields = {"build_id": "B1", "args": [], "cwd": str(root),
              "env_file": str((root / "env.x.yaml").resolve()),
              "pipeline": str(root / "pipeline.yaml"), "tasks": ["ingest", "train-rf"],
              "reports": str(root / "reports" / "x"),
              "lock": str(root / "products" / "x" / "build.lock")}  # fmt: skip
    return where, fields


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = tmp_path / "project"
    root.mkdir()
    where, fields = _project(root)
    monkeypatch.chdir(root)
    record = root / "logs" / "build-x.unchanged.json"
    then = unchanged.snapshot(where)
    assert unchanged.remember(record, fields, (where, then), where, {})
    return root, record


def _later(path: Path, text: str | None = None) -> None:
    """Rewrite `path` (or touch it) with a modification time surely later than before."""
    if text is not None:
        path.write_text(text)
    later = time.time_ns() + 5_000_000_000
    os.utime(path, ns=(later, later))


def _relink(link: Path) -> None:
    """Point the link at another month of the same size."""
    link.unlink()
    link.symlink_to("2024-06.csv")


def _put_back(path: Path) -> None:
    """Replace a file with another of the same size and modification time (`cp -p`)."""
    found = path.stat()
    path.unlink()
    path.write_text("roc_auc: {min: 0.6}\n")
    os.utime(path, ns=(found.st_atime_ns, found.st_mtime_ns))


def _decided(root: Path, record: Path, args: list[str] | None = None) -> bool:
    return unchanged.up_to_date(record, str(root / "env.x.yaml"), args or []) is not None


def test_nothing_changed_is_decided_and_what_no_task_reads_changes_nothing(project):
    root, record = project
    assert _decided(root, record)
    unread = ["logs/build-x.log", "mlruns/mlflow.db", ".git/HEAD", "src/pkg/__pycache__/m.pyc",
              "products/other/model.pkl", "reports/x/build.json", "products/x/build.lock"]  # fmt: skip
    for name in unread:
        _later(root / name, "changed")
    (root / "products" / "other" / "new.pkl").write_text("another project's build")
    assert _decided(root, record)


@pytest.mark.parametrize(
    "change",
    ["edit a notebook", "touch a notebook", "a new file in the project", "a product deleted",
     "a product rewritten", "a new batch file", "the data outside changed", "a report deleted",
     "the env file touched", "the data's link pointed elsewhere", "a linked notebook edited",
     "a file put back with its old time"],
)  # fmt: skip
def test_every_change_a_task_could_read_goes_to_ploomber(project, change):
    root, record = project
    outside = root.parent / "project-data.csv"
    {
        "edit a notebook": lambda: _later(root / "notebooks/train.py", "# %%\nx = 2\n"),
        "touch a notebook": lambda: _later(root / "notebooks/train.py"),
        "a new file in the project": lambda: (root / "notebooks/score.py").write_text("# %%\n"),
        "a product deleted": lambda: (root / "products/x/model.pkl").unlink(),
        "a product rewritten": lambda: _later(root / "products/x/model.pkl", "model"),
        "a new batch file": lambda: (root / "data/incoming/2024-02.csv").write_text("a\n2\n"),
        "the data outside changed": lambda: _later(outside, "a,b\n1,3\n"),
        "a report deleted": lambda: (root / "reports/x/index.html").unlink(),
        "the env file touched": lambda: _later(root / "env.x.yaml"),
        "the data's link pointed elsewhere": lambda: _relink(root / "data" / "current.csv"),
        "a linked notebook edited": lambda: _later(
            root.parent / "project-shared" / "score.py", "# %%\ny = 2\n"
        ),
        "a file put back with its old time": lambda: _put_back(root / "model" / "gates.yaml"),
    }[change]()
    assert not _decided(root, record)


def test_another_call_or_a_running_build_goes_to_ploomber(project, monkeypatch):
    root, record = project
    assert not _decided(root, record, ["--env--seed", "2"])
    assert not _decided(root, record, ["--force"])
    with open(root / "products/x/build.lock") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert not _decided(root, record)
    assert _decided(root, record)
    monkeypatch.chdir(root / "notebooks")  # Ploomber finds pipeline.yaml from where it runs
    assert not _decided(root, record)


@pytest.mark.parametrize(
    ("args", "decidable"),
    [([], True), (["--env--seed", "1"], True), (["--env--seed=1", "--env--a", "b"], True),
     (["--env--seed"], False), (["--force"], False), (["--partially", "features"], False),
     (["--env--seed", "1", "--debug"], False)],
)  # fmt: skip
def test_only_env_overrides_are_decided_here(args, decidable):
    assert unchanged.decidable(args) is decidable


def test_a_change_while_the_build_ran_or_a_volatile_value_keeps_no_record(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    where, fields = _project(root)
    record = root / "logs" / "build-x.unchanged.json"
    then = unchanged.snapshot(where)
    _later(root / "notebooks/train.py", "# %%\nx = 3\n")  # edited while the build ran
    assert not unchanged.remember(record, fields, (where, then), where, {})
    assert not record.exists()

    then = unchanged.snapshot(where)  # a module the build tracked first, changed after hashing
    module = tmp_path / "site-packages" / "lib.py"
    module.parent.mkdir()
    module.write_text("x = 1\n")
    more = where | {"files": [*where["files"], str(module)]}
    hashed = {str(module): [module.stat().st_size, module.stat().st_mtime_ns - 1]}
    assert not unchanged.remember(record, fields, (where, then), more, hashed)
    hashed = {str(module): [module.stat().st_size, module.stat().st_mtime_ns]}
    assert unchanged.remember(record, fields, (where, then), more, hashed)

    (root / "env.x.yaml").write_text('products: "products/{{now}}"\n')
    then = unchanged.snapshot(where)
    assert not unchanged.remember(record, fields, (where, then), where, {})
    assert not record.exists()


def test_the_files_an_env_names_are_compared_as_named_and_where_they_lead(tmp_path):
    data, contract = tmp_path / "churn.csv", tmp_path / "contracts" / "churn.yaml"
    contract.parent.mkdir()
    data.write_text("a\n")
    contract.write_text("columns: {}\n")
    link = tmp_path / "current.csv"
    link.symlink_to(data)
    env = {"source": str(link), "data": {"contract": str(contract), "other": "missing.yaml"},
           "candidates": [{"name": "rf"}], "products": str(tmp_path)}  # fmt: skip
    assert unchanged.env_files(env) == [str(link), str(data), str(contract), str(contract)]


@pytest.mark.parametrize(
    ("args", "free"),
    [([], True), (["--env--seed", "2"], True), (["--env--notebook_executor=papermill"], True),
     (["--env--current_batches", "data/incoming/*.csv"], False),
     (["--env--gates", "gates.other.yaml"], False), (["--env--products", "out"], False),
     (["--env--data--split", "latest"], True), (["--env--data", "x"], False)],
)  # fmt: skip
def test_an_override_that_names_or_replaces_a_path_is_not_decided_here(tmp_path, args, free):
    (tmp_path / "gates.other.yaml").write_text("metrics: {}\n")
    env = {"seed": 1, "notebook_executor": "papermill", "current_batches": None,
           "gates": str(tmp_path / "gates.yaml"), "products": str(tmp_path / "products"),
           "data": {"split": "first"}}  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        assert unchanged.path_free(args, env) is free
