"""What a task reads that Ploomber does not track, hashed by content.

Ploomber reruns a task when its notebook or its parameters change. A task also reads files its
parameters only name (the data source, the contract, the files of `current_batches`) and runs
code of this package. The build records the sha256 of each of those when a task runs, and
before the next build reruns every task where one of them changed, with everything
downstream of it. A file is hashed again only when its size or mtime changed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..data.batches import current_files
from ..data.sources import source_files
from ..errors import DataError
from ..ploombercompat import task_code, task_params
from ..storage import read_json, sha256_file, write_json
from . import imports

#: The parameters that name files a task reads.
SOURCE, CONTRACT, CURRENT = "source", "contract", "current_batches"
#: The committed record of the champion, rewritten by every promotion and rollback.
CHAMPION_RECORD = "champion_record"


def task_files(task, graph: dict[str, set[str]]) -> list[Path]:
    """The files `task` reads beyond its notebook and parameters, and the package's modules
    its code imports."""
    params = task_params(task)
    root = Path(params.get("root") or Path.cwd())
    files: list[Path] = []
    try:  # a path refused or missing is the task's own error to report, with its message
        if SOURCE in params:
            files += source_files(str(params[SOURCE]), root).values()
        if params.get(CURRENT):
            files += current_files(params[CURRENT], root, within_root=False)
    except DataError:
        pass
    files += [Path(params[key]) for key in (CONTRACT, CHAMPION_RECORD) if params.get(key)]
    code, module = task_code(task)
    if code is not None and code.suffix == ".py" and code.is_file():
        used = imports.file_imports(code)  # a notebook
    else:  # a function task: the module it lives in
        used = {module} if module else set()
    files += [imports.module_file(m) for m in sorted(imports.closure(used, graph))]
    return sorted({f.resolve() for f in files})


def cache_file(record_file: Path) -> Path:
    """Where the hashes are cached, beside the record: `.inputs.cache.json`."""
    return record_file.with_name(f".{record_file.stem}.cache.json")


@dataclass
class Hasher:
    """sha256 of files, kept in a cache file by path with the size and mtime it was taken at."""

    cache_file: Path
    cache: dict

    @classmethod
    def load(cls, cache_file: Path) -> Hasher:
        return cls(cache_file, read_json(cache_file) if cache_file.is_file() else {})

    def __call__(self, path: Path) -> str:
        try:
            stat = os.stat(path)
        except OSError:
            return "missing"
        key, seen = str(path), [stat.st_size, stat.st_mtime_ns]
        cached = self.cache.get(key)
        if cached and cached[:2] == seen:
            return cached[2]
        digest = sha256_file(path)
        self.cache[key] = [*seen, digest]
        return digest

    def save(self) -> None:
        write_json(self.cache_file, self.cache)


class Inputs:
    """The inputs of every task of a rendered DAG, against those of each task's last run."""

    def __init__(self, dag, record_file: str | Path):
        self.record_file = Path(record_file)
        self.hasher = Hasher.load(cache_file(self.record_file))
        graph = imports.package_graph()
        self.now = {name: {str(f): self.hasher(f) for f in task_files(dag[name], graph)}
                    for name in dag}  # fmt: skip
        self.then = read_json(self.record_file) if self.record_file.is_file() else {}

    def changed(self) -> dict[str, list[str]]:
        """Task -> the files that changed since it last ran ([] when no run of it is recorded)."""
        found = {}
        for name, now in self.now.items():
            then = self.then.get(name)
            if then is None:
                found[name] = []
                continue
            diff = sorted(p for p in now.keys() | then.keys() if now.get(p) != then.get(p))
            if diff:
                found[name] = diff
        return found

    def record(self, tasks: list[str]) -> None:
        """Keep the inputs `tasks` ran with (called after they ran), beside what the record
        holds now: an engine's tasks, each in a process of its own, record one by one (under
        a lock, nbmlops.build.task). A build that ran no task writes nothing, not even the hash
        cache: a failed or no-op build leaves products as they were."""
        if tasks:
            self.then = read_json(self.record_file) if self.record_file.is_file() else {}
            self.then |= {name: self.now[name] for name in tasks}
            write_json(self.record_file, self.then)
            self.hasher.save()
