"""Which modules of the package a file imports, at the top or inside functions, read not run.

The build uses it to know which code a task runs (a change there reruns the task), and a test
uses it to keep imports going one way (docs/architecture.md).
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbmlops

PACKAGE = Path(nbmlops.__file__).resolve().parent
NAME = PACKAGE.name


def module_name(path: Path, package: Path = PACKAGE) -> str:
    """`nbmlops.data.dataset` for `.../nbmlops/data/dataset.py`."""
    parts = path.resolve().relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_file(name: str, package: Path = PACKAGE) -> Path:
    """The file of a module of the package (its `__init__.py` for a subpackage)."""
    path = package.parent.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _is_module(name: str, package: Path) -> bool:
    return module_file(name, package).is_file()


def file_imports(path: Path, package: Path = PACKAGE) -> set[str]:
    """Every module of the package that `path` imports (relative imports only inside it)."""
    inside = path.resolve().is_relative_to(package)
    name = module_name(path, package) if inside else ""
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == NAME}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != NAME:
                continue
            # `from . import x` names modules; `from .m import f` names one module.
            names = {f"{module}.{a.name}" for a in node.names}
            found |= {n for n in names if _is_module(n, package)} or {module}
    return found


def package_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module name -> the package modules it imports, for every module of the package."""
    return {
        module_name(p, package): file_imports(p, package) for p in sorted(package.rglob("*.py"))
    }


def closure(modules: set[str], graph: dict[str, set[str]]) -> set[str]:
    """The modules given and every module they import, directly or not, with their packages'
    `__init__` modules (Python runs them on the way)."""
    seen, todo = set(), list(modules)
    while todo:
        module = todo.pop()
        parents = [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)]
        for name in [module, *parents]:
            if name not in seen and name in graph:
                seen.add(name)
                todo += sorted(graph[name])
    return seen
