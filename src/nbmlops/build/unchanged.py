"""A build with nothing to do, decided without loading Ploomber.

After a build that passed in full, `make build` keeps what the files a build reads and writes
were then: the size and modification time of every file of the project (its notebooks,
pipeline.yaml, the env files, the package, the user's features, contracts and gates), of
every file of the env's products and reports folders, of each file an env value names (the
data source), of each file the build's inputs record lists (`inputs.py`) and of each file the
`current_batches` glob matches, and each notebook pipeline.yaml names. The next `make build`
with the same arguments compares them with the files as they are now, the project's lock free:
when not one differs, no task can be stale, and the build ends there in about 0.4 s, without
importing Ploomber. Links are followed: a link pointed elsewhere differs. Anything else, a file
touched, added or removed, a build running, another argument, goes to Ploomber as before, so a
wrong guess costs time, never a stale product.

What is not compared is what no task reads: the version control folder, the virtual
environment, the logs, the MLflow store (a build reads the champion through the committed
baseline file, which is compared), and the other projects' products and the raw stores under
the top-level `products`, `reports` and `data` folders.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..locking import lock_free
from ..storage import read_json, write_json

#: Folders under the project no task reads (besides those whose name starts with a dot).
SKIPPED = {"__pycache__", "node_modules", "mlruns", "logs", "venv"}
#: Top-level folders that hold every project's products and the raw stores: the build's own
#: folders among them are compared on their own, the data files by the env values naming them.
SKIPPED_AT_TOP = {"products", "reports", "data"}
#: Files a build rewrites whatever it does: the locks (their holder) and the build's own record.
UNCOMPARED = re.compile(r"\.lock$|^build\.json$")
#: Placeholders whose value changes without any file changing: a build using one goes to Ploomber.
VOLATILE = re.compile(r"\{\{\s*(now|git|git_hash|env\.|user)")
#: The arguments a build may be given and still be decided here: `--env--KEY VALUE` overrides.
_OVERRIDE = re.compile(r"^--env--[\w-]+(=.*)?$")


def record_path(log: Path) -> Path:
    """Where the record lies: beside the build's log (`logs/build-NAME.log`)."""
    return log.with_name(log.stem + ".unchanged.json")


def overrides(args: list[str]) -> dict[tuple[str, ...], str]:
    """The `--env--KEY VALUE` overrides of `args`, by key path (a `--` in KEY nests)."""
    found, i = {}, 0
    while i < len(args):
        name, _, value = args[i].partition("=")
        if not value and i + 1 < len(args):
            value, i = args[i + 1], i + 1
        found[tuple(name.removeprefix("--env--").split("--"))] = value
        i += 1
    return found


def path_free(args: list[str], env: dict) -> bool:
    """Whether no override names a file or folder, or replaces a value that does: what such
    a build reads is not what the env file says, so it is not decided here."""

    def pathlike(value) -> bool:
        text = str(value)
        return any(c in text for c in "/*~\\") or (bool(text) and Path(text).exists())

    for key, value in overrides(args).items():
        current = env
        for part in key:
            current = current.get(part) if isinstance(current, dict) else None
        if pathlike(value) or isinstance(current, dict | list) or pathlike(current or ""):
            return False
    return True


def decidable(args: list[str]) -> bool:
    """Whether a build with these arguments may be decided here: env overrides alone (a
    forced, partial or debugged build goes to Ploomber)."""
    i = 0
    while i < len(args):
        if not _OVERRIDE.match(args[i]):
            return False
        i += 1 if "=" in args[i] else 2
    return i == len(args)


def _walk(folder: Path, top: bool = False, visited: set[str] | None = None) -> Iterator[Path]:
    """Every file under `folder`, a linked folder followed once (where its files are edited,
    Ploomber would see it)."""
    visited = set() if visited is None else visited
    real = os.path.realpath(folder)
    if real in visited:
        return
    visited.add(real)
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if entry.is_dir():
            if entry.name.startswith(".") or entry.name in SKIPPED:
                continue
            if top and entry.name in SKIPPED_AT_TOP:
                continue
            yield from _walk(Path(entry.path), visited=visited)
        elif not UNCOMPARED.search(entry.name):
            yield Path(entry.path)


def _stat(path: Path) -> list[int]:
    """Size, modification and change times, and inode of the file a path leads to: a link
    pointed elsewhere, or a file put back with its old time (`cp -p`), differs."""
    try:
        found = os.stat(path)
    except OSError:
        return [-1, -1, -1, -1]  # missing: a file that appears later differs
    return [found.st_size, found.st_mtime_ns, found.st_ctime_ns, found.st_ino]


def snapshot(where: dict) -> dict[str, list[int]]:
    """Size and modification time of every file `where` names: `project` (walked without the
    skipped folders), `outputs` (walked whole), `files` (each, missing ones too) and `globs`
    ([folder, pattern] pairs, matched now)."""
    paths: list[Path] = []
    if where.get("project"):
        paths += _walk(Path(where["project"]), top=True)
    for folder in where.get("outputs", []):
        paths += _walk(Path(folder))
    paths += [Path(f) for f in where.get("files", [])]
    for folder, pattern in where.get("globs", []):
        paths += [p for p in Path(folder).glob(pattern) if p.is_file()]
    return {str(p): _stat(p) for p in sorted(set(paths))}


def sources(seen: dict[str, list[int]], outputs: Iterable[str]) -> dict[str, list[int]]:
    """`seen` without the files under `outputs`: what the build reads."""
    roots = tuple(str(Path(o)) + os.sep for o in outputs)
    return {p: s for p, s in seen.items() if not p.startswith(roots)}


def env_files(env: dict) -> list[str]:
    """Every file an env value names (the data source, the contract, the gates, the baseline,
    the derived features): strings that are paths of existing files, as named (a link) and
    where they lead."""
    found: list[str] = []

    def visit(value) -> None:
        if isinstance(value, dict):
            for item in value.values():
                visit(item)
        elif isinstance(value, list):
            for item in value:
                visit(item)
        elif isinstance(value, str) and "\n" not in value and len(value) < 4096:
            try:
                if Path(value).is_file():
                    found.extend([str(Path(value).absolute()), str(Path(value).resolve())])
            except OSError:
                pass

    visit(env)
    return found


def read_inputs(record_file: Path) -> list[str]:
    """Every file the build's inputs record lists, for any task ([] when there is none)."""
    try:
        found = read_json(record_file) if record_file.is_file() else {}
    except (OSError, ValueError):
        return []
    return sorted({path for files in found.values() for path in files})


def hashed_at(record_file: Path) -> dict[str, list[int]]:
    """The size and modification time each input had when the build hashed it (its cache):
    an input that changed while the build ran then differs from what the build left."""
    from .inputs import cache_file

    try:
        found = read_json(cache_file(record_file))
    except (OSError, ValueError):
        return {}
    return {path: list(entry[:2]) for path, entry in found.items()}


def up_to_date(record_file: Path, env_file: str, args: list[str]) -> dict | None:
    """The record of the last build that passed, when a build with `args` has nothing to do;
    else None (Ploomber then decides)."""
    if not decidable(args) or not record_file.is_file():
        return None
    try:
        kept = read_json(record_file)
    except (OSError, ValueError):
        return None
    same_call = (kept.get("args") == args and kept.get("cwd") == os.getcwd()
                 and kept.get("env_file") == str(Path(env_file).resolve()))  # fmt: skip
    if not same_call or not lock_free(kept["lock"]):
        return None
    return kept if snapshot(kept["where"]) == kept["seen"] else None


def remember(record_file: Path, fields: dict, watched: tuple[dict, dict[str, list[int]]],
             where: dict, hashed: dict[str, list[int]]) -> bool:  # fmt: skip
    """Keep the files of `where` as a build that passed left them, with `fields` (its id,
    arguments, tasks, folders). Nothing is kept, and the next build goes to Ploomber, when a
    file the build reads changed while it ran: one of `watched` (what was compared as it
    started, and the snapshot then), or an input it tracked first in this build whose size or
    time is not what it had when the build hashed it (`hashed`); or when pipeline.yaml or the
    env file uses a placeholder whose value changes with no file changing."""
    record_file.unlink(missing_ok=True)
    for name in (fields["env_file"], fields["pipeline"]):
        if VOLATILE.search(Path(name).read_text(encoding="utf-8")):
            return False
    _, then = watched
    seen = snapshot(where)  # one look, compared and kept: nothing changes between the two
    now, before = sources(seen, where["outputs"]), sources(then, where["outputs"])
    if any(now.get(p) != s for p, s in before.items()):
        return False  # changed, or gone, while the build ran
    first = {p: s for p, s in now.items() if p not in before}
    if any(hashed.get(p) != s[:2] for p, s in first.items()):
        return False  # appeared while the build ran, or changed after the build hashed it
    write_json(record_file, fields | {"where": where, "seen": seen})
    return True


def forget(record_file: Path) -> None:
    """A build that Ploomber runs may change anything: the record no longer holds."""
    record_file.unlink(missing_ok=True)
