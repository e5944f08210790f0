"""The README and the documentation site: short, true to the Makefile and the pipeline, and a
site that builds with no broken link."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

from nbmlops.commands.engines import task_graph
from nbmlops.reports.index import DOCS_FOLDER, write_front_page
from nbmlops.storage import write_json

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"
# not --quiet: it hides the warnings that strict mode counts
MKDOCS = [sys.executable, "-m", "mkdocs", "build"]
#: A test the docs cite: `tests/part/test_x.py`, with `::test_name` or not, or a folder of tests.
CITED_PATH = re.compile(r"(?<![\w/.])(tests/[\w/.-]*\w/?)(?:::(\w+))?")
#: A test file or a test named alone: `test_x.py`, `test_name`.
CITED_NAME = re.compile(r"`(test_\w+)(\.py)?`")


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def _make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*MKDOCS, "-f", str(config), "-d", str(site)], capture_output=True,
                          text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})  # fmt: skip


def test_the_readme_is_short_and_links_every_page_of_the_docs():
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    linked = set(re.findall(r"\]\(docs/([\w-]+\.md)\)", text))
    assert linked == {p.name for p in (ROOT / "docs").glob("*.md")}


def _tests_defined(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def test_every_test_the_docs_and_readme_cite_exists():
    """A test moved, renamed or split leaves no page pointing at nothing."""
    pages = [README, *sorted((ROOT / "docs").glob("*.md"))]
    test_files = sorted((ROOT / "tests").rglob("test_*.py"))
    defined = set().union(*map(_tests_defined, test_files))
    missing, cited = [], 0
    for page in pages:
        text = page.read_text()
        for path, name in CITED_PATH.findall(text):
            cited += 1
            if not (ROOT / path).exists():
                missing.append(f"{page.name}: {path}")
            elif name and name not in _tests_defined(ROOT / path):
                missing.append(f"{page.name}: {path}::{name}")
        for name, file in CITED_NAME.findall(text):
            cited += 1
            if file and not any(f.name == name + file for f in test_files):
                missing.append(f"{page.name}: {name}{file}")
            if not file and name not in defined:
                missing.append(f"{page.name}: {name}")
    assert cited > 40
    assert not missing, f"the docs cite tests that do not exist: {missing}"


def test_every_command_the_readme_shows_exists():
    text = README.read_text()
    shown = [line.split("#")[0].strip() for block in _blocks(text, "bash") for line in
             block.splitlines()] + re.findall(r"`(make [^`]+)`", text)  # fmt: skip
    commands = [c for c in shown if c]
    assert len(commands) >= 12
    targets, makefile = _make_targets(), (ROOT / "Makefile").read_text()
    for command in commands:
        words = command.split()
        assert words[0] == "make", f"the README shows a command that is not make: {command}"
        assert words[1] in targets, f"`{command}`: the Makefile has no target {words[1]!r}"
        for variable in [w.split("=")[0] for w in words[2:] if "=" in w]:
            assert f"$({variable})" in makefile, f"`{command}`: the Makefile never reads {variable}"


def test_the_pipeline_picture_is_the_pipeline():
    """The README's graph is the pipeline's, every edge implied by others left out and the
    candidates' tasks drawn as one."""
    (picture,) = _blocks(README.read_text(), "mermaid")
    drawn = set()
    for line in picture.splitlines()[1:]:
        nodes = [re.sub(r"\[.*\]", "", n).strip() for n in line.split("-->")]
        drawn |= set(zip(nodes, nodes[1:], strict=False))
    graph = nx.DiGraph()
    for task, upstream in task_graph(ROOT, "env.yaml").items():
        node = "train" if task.startswith("train-") else task
        graph.add_node(node)
        graph.add_edges_from(("train" if u.startswith("train-") else u, node) for u in upstream)
    assert drawn == set(nx.transitive_reduction(graph).edges)


def test_the_site_builds_strict_with_the_readme_as_its_home(tmp_path):
    result = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stderr
    home = (tmp_path / "site" / "index.html").read_text()
    assert "Your data in three steps" in home and 'href="pipeline.html"' in home
    assert (tmp_path / "site" / "retraining.html").is_file()


def test_a_broken_link_or_a_page_left_out_fails_the_site(tmp_path):
    project = tmp_path / "project"
    for name in ("mkdocs.yml", "README.md", "src/nbmlops/tools/docsite.py"):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "docs", project / "docs")
    (project / "docs" / "stray.md").write_text("# Stray\n\nNo page links here.\n")
    with (project / "docs" / "pipeline.md").open("a") as page:
        page.write("\nSee [the serving page](serving.md#no-such-part) and [gone](gone.md).\n")
    result = _build(project / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    for problem in ("stray.md", "#no-such-part", "gone.md"):
        assert problem in result.stderr


@pytest.mark.parametrize("built", [True, False])
def test_the_front_page_links_the_docs_when_they_are_built(tmp_path, built):
    write_json(tmp_path / "churn" / "project.json", {
        "project": "churn", "model_name": "churn", "source": "data/churn.csv", "rows": 10,
        "champion": None, "challenger": "1", "gates": "pass", "batches": 1,
        "batches_failing": 0, "monitoring": {"status": "pass", "text": "1 batch passes"},
        "built": "2026-12-06T00:00:00+00:00"})  # fmt: skip
    if built:
        (tmp_path / DOCS_FOLDER).mkdir()
        (tmp_path / DOCS_FOLDER / "index.html").write_text("<html></html>")
    page = write_front_page(tmp_path, "project.json").read_text()
    assert (f'href="{DOCS_FOLDER}/index.html"' in page) is built
    assert 'href="churn/index.html"' in page


def test_the_docs_are_built_where_the_front_page_looks():
    config = (ROOT / "mkdocs.yml").read_text()
    assert re.search(rf"^site_dir: reports/{DOCS_FOLDER}$", config, re.M)
