"""What a change does to the model, read from git against a base branch: the env file's
settings key by key (candidates, derived features, calibration, selection metric, data,
monitoring), and the files a build reads (the derived-features file, the data contract, the
gate file, the pipeline, the notebooks, the package), each with its lines added and removed.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from ..envfile import load_env

#: Files a build reads, by the env key that names them (besides the env file itself).
NAMED = {"features": "derived features", "contract": "data contract", "gates": "gate file",
         "baseline": "committed champion"}  # fmt: skip
#: Folders and files whose every change reaches the build, and what they are.
READ = {"pipeline.yaml": "pipeline", "notebooks/": "notebook", "src/": "package",
        "requirements.lock": "locked environment"}  # fmt: skip
#: What is listed file by file; the rest is counted by kind (the package, other files).
PER_FILE = {*NAMED.values(), "pipeline", "notebook", "locked environment"}


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)


def since(base: str, env_file: str | Path) -> list[str]:
    """One line per change since `base` (from where this branch left it, to the work tree)."""
    env_file = Path(env_file).resolve()
    found = _git(env_file.parent, "rev-parse", "--show-toplevel")
    if found.returncode:
        return [f"no git repository here to compare with {base}"]
    root = Path(found.stdout.strip())
    fork = _git(root, "merge-base", base, "HEAD")
    if fork.returncode:
        return [f"the base {base} is not in this clone (check out with its history: "
                "actions/checkout's fetch-depth: 0)"]  # fmt: skip
    point = fork.stdout.strip()
    lines = _env_changes(root, point, env_file)
    stats = {}  # path: (lines added, lines removed), None for a binary or new file
    for row in _git(root, "diff", "--numstat", point).stdout.splitlines():
        added, removed, path = row.split("\t", 2)
        stats[path] = (int(added), int(removed)) if added != "-" else None
    for path in _git(root, "ls-files", "--others", "--exclude-standard").stdout.splitlines():
        stats[path] = None
    stats.pop(env_file.relative_to(root).as_posix(), None)  # its settings are listed above
    roles = _roles(root, env_file)
    grouped: dict[str, list[str]] = {}
    for path in sorted(stats):
        role = roles.get(path) or next((what for prefix, what in READ.items()
                                        if path.startswith(prefix)), "other")  # fmt: skip
        grouped.setdefault(role, []).append(path)
    for role, paths in sorted(grouped.items(), key=lambda kv: kv[0] == "other"):
        if role in PER_FILE:
            lines += [f"{role}: `{path}` {_lines(stats[path])}" for path in paths]
        else:
            counted = [stats[p] for p in paths if stats[p] is not None]
            total = (sum(a for a, _ in counted), sum(r for _, r in counted))
            named = ", ".join(f"`{p}`" for p in paths[:4]) + (" …" if len(paths) > 4 else "")
            what = "other files (tests, docs, workflows…)" if role == "other" else role
            lines.append(f"{what}: {len(paths)} file{'s' if len(paths) > 1 else ''} "
                         f"{_lines(total)} ({named})")  # fmt: skip
    return lines


def _lines(counts: tuple[int, int] | None) -> str:
    return "new or binary" if counts is None else f"+{counts[0]} −{counts[1]}"


def _roles(root: Path, env_file: Path) -> dict[str, str]:
    """The files the env file names, as paths from the repository's root, and what each is."""
    try:
        env = load_env(env_file)
    except Exception:  # noqa: BLE001 - a broken env file: its own change is listed anyway
        return {}
    roles = {}
    for key, what in NAMED.items():
        value = env.get(key)
        value = value.get("file") if isinstance(value, dict) else value
        if isinstance(value, str) and value:
            path = Path(value) if Path(value).is_absolute() else env_file.parent / value
            try:
                roles[path.resolve().relative_to(root).as_posix()] = what
            except ValueError:
                continue
    return roles


def _env_changes(root: Path, point: str, env_file: Path) -> list[str]:
    name = env_file.relative_to(root).as_posix()
    before = _git(root, "show", f"{point}:{name}")
    if before.returncode:
        return [f"`{name}` is new"]
    try:
        old = yaml.safe_load(before.stdout) or {}
        new = yaml.safe_load(env_file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        return [f"`{name}` cannot be read: {exc}"]
    return [f"`{name}`: {line}" for line in diff(old, new)]


def _short(value) -> str:
    text = json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "…"


def diff(old, new, prefix: str = "") -> list[str]:
    """Key by key, what differs between two settings mappings ("candidates.rf.params.C: 1 → 2",
    "candidates.et added: {…}")."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return [] if old == new else [f"`{prefix}`: {_short(old)} → {_short(new)}"]
    lines = []
    for key in list(old) + [k for k in new if k not in old]:
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in new:
            lines.append(f"`{path}` removed (was {_short(old[key])})")
        elif key not in old:
            lines.append(f"`{path}` added: {_short(new[key])}")
        else:
            lines += diff(old[key], new[key], path)
    return lines
