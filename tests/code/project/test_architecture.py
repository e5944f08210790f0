"""The layout stays true: each part imports only the parts below it (docs/architecture.md)."""

from __future__ import annotations

import pytest

from nbmlops.build.imports import package_graph
from tests.conftest import PROJECT

PACKAGE = PROJECT / "src" / "nbmlops"
BASE = "base"
#: What each part may import, besides itself and the base modules.
ALLOWED = {
    BASE: set(),
    "data": set(),
    "registry": set(),
    "monitoring": {"registry"},
    "training": {"registry", "monitoring"},
    "serving": {"registry"},
    "reports": {"registry", "monitoring", "training"},
    "build": {"data"},
    "commands": {"build", "data", "registry", "monitoring", "training", "serving", "reports"},
    "tools": {"commands", "build", "registry", "monitoring", "serving"},
}
#: Folders at the top that belong to the base, as the modules beside them do.
BASE_PACKAGES = {"metrics"}
#: Single modules a part may import outside its allowance, each with the reason.
EXCEPTIONS = {
    # The request contract applies the data contract's ranges and allowed values to requests.
    ("serving", "nbmlops.data.contract"),
    # `make build` asks a shared registry whether it answers before any task trains.
    ("build", "nbmlops.registry.store"),
    ("build", "nbmlops.registry.errors"),
}


def part(module: str) -> str:
    """`data` for nbmlops.data.dataset; `base` for the modules at the top (nbmlops.spec) and
    for the base's packages (nbmlops.metrics.scores)."""
    pieces = module.split(".")
    folder = len(pieces) > 2 or (PACKAGE / pieces[-1]).is_dir()
    return pieces[1] if folder and pieces[1] not in BASE_PACKAGES else BASE


def graph() -> dict[str, set[str]]:
    return package_graph(PACKAGE)


def violations(edges: dict[str, set[str]]) -> list[str]:
    """Imports that go the wrong way, as `importer -> imported`."""
    wrong = []
    for importer, targets in edges.items():
        here = part(importer)
        for target in sorted(targets):
            there = part(target)
            ok = there in {here, BASE} | ALLOWED[here] or (here, target) in EXCEPTIONS
            if target == "nbmlops" or ok:
                continue
            wrong.append(f"{importer} ({here}) -> {target} ({there})")
    return wrong


def test_every_module_belongs_to_a_known_part():
    assert {part(m) for m in graph()} == set(ALLOWED)


def test_the_base_packages_are_base_and_import_nothing_of_their_own():
    assert all((PACKAGE / name / "__init__.py").is_file() for name in BASE_PACKAGES)
    assert part("nbmlops.metrics") == part("nbmlops.metrics.tally") == BASE
    assert part("nbmlops.monitoring") == part("nbmlops.monitoring.drift") == "monitoring"
    edges = graph()
    assert all(edges[f"nbmlops.{name}"] == set() for name in BASE_PACKAGES)


def test_imports_go_one_way():
    assert violations(graph()) == []


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("nbmlops.serving.service", "nbmlops.data.dataset"),  # serving builds no dataset
        ("nbmlops.serving.rendezvous", "nbmlops.training.candidates"),
        ("nbmlops.monitoring.scoring", "nbmlops.training.evaluation"),
        ("nbmlops.registry.cards", "nbmlops.reports.index"),
        ("nbmlops.spec", "nbmlops.data.dataset"),  # base imports no part
        ("nbmlops.metrics.tally", "nbmlops.monitoring.verdict"),  # nor do the base's packages
        ("nbmlops.reports.index", "nbmlops.tools.bench"),  # nothing imports the tools
        ("nbmlops.commands.retrain", "nbmlops.tools.bench"),  # not even the commands
        ("nbmlops.training.evaluation", "nbmlops.commands.backtest"),  # no part imports them
    ],
)
def test_a_wrong_way_import_is_caught(importer, imported):
    edges = graph()
    edges[importer] = edges[importer] | {imported}
    assert violations(edges) == [f"{importer} ({part(importer)}) -> {imported} ({part(imported)})"]


def test_the_parser_sees_relative_and_late_imports():
    edges = graph()
    assert (
        "nbmlops.data.contract" in edges["nbmlops.serving.service"]
    )  # from ..data import contract
    assert "nbmlops.serving.payload" in edges["nbmlops.serving.shadow"]  # inside a function
    assert "nbmlops.spec" in edges["nbmlops.data.dataset"]  # from ..spec import BATCH, ...


def test_no_import_cycles():
    edges = graph()
    done, path = set(), []

    def visit(module: str) -> None:
        if module in path:
            raise AssertionError(
                "import cycle: " + " -> ".join(path[path.index(module) :] + [module])
            )
        if module in done:
            return
        path.append(module)
        for target in edges.get(module, ()):
            visit(target)
        path.pop()
        done.add(module)

    for module in edges:
        visit(module)


def tree_in_the_doc() -> dict[str, int]:
    """The modules docs/architecture.md's tree lists, each with the line count it gives."""
    import re

    text = (PROJECT / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = text.split("## The tree", 1)[1].split("```", 2)[1]
    listed, folder = {}, None
    for line in block.splitlines():
        if found := re.match(r"^  (\w+)/\s", line):
            folder = found[1]
        elif found := re.match(r"^(\s+)(\w+\.py)\s+(\d+)\b", line):
            name = found[2] if len(found[1]) == 2 else f"{folder}/{found[2]}"
            listed[name] = int(found[3])
    return listed


def test_the_architecture_doc_lists_every_module_with_its_line_count():
    actual = {str(p.relative_to(PACKAGE)): len(p.read_text(encoding="utf-8").splitlines())
              for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}  # fmt: skip
    listed = tree_in_the_doc()
    assert sorted(set(actual) - set(listed)) == [], "modules docs/architecture.md leaves out"
    assert sorted(set(listed) - set(actual)) == [], "modules docs/architecture.md lists, gone"
    wrong = {name: f"{listed[name]} in the doc, {actual[name]} in the file"
             for name in listed if listed[name] != actual[name]}  # fmt: skip
    assert wrong == {}, "docs/architecture.md's line counts"
