"""Atomic writes and content hashing: a product is either whole or absent, never half-written."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

_CHUNK = 1 << 20
#: Rows per Parquet row group: a reader of a large file holds one group at a time.
ROW_GROUP_ROWS = 100_000
#: Name endings of partial writes: a temporary file, a staging folder, a swapped-out folder.
TMP, STAGING, OLD = ".tmp", ".staging", ".old"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def unit_hash(*parts) -> float:
    """A number in [0, 1) fixed by `parts` (blake2b of their text, joined by NUL): the same
    parts draw the same number on any machine, in any process, at any time."""
    digest = hashlib.blake2b("\0".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TMP, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; products are ordinary files
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def _write_with(path: str | Path, writer: Callable[[Path], None]) -> Path:
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return _write_with(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_bytes(path: str | Path, data: bytes) -> Path:
    return _write_with(path, lambda p: p.write_bytes(data))


def write_json(path: str | Path, data: Any) -> Path:
    text = json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n"
    return write_text(path, text)


def append_json_lines(path: str | Path, rows: list[dict]) -> None:
    """Rows as whole JSON lines at the end of a file, synced to the disk before it returns.
    All or nothing: a write that fails part way (a full disk) is cut back to where the file
    ended, so no half line is left for the next append to run into."""
    text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows)
    data = text.encode("utf-8")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":  # a line cut off before: end it
            data = b"\n" + data
        try:
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_parquet(path: str | Path, df: pd.DataFrame) -> Path:
    """A frame as Parquet, in row groups a chunked reader takes one at a time."""
    return _write_with(path, lambda p: df.to_parquet(p, index=False, row_group_size=ROW_GROUP_ROWS))


def write_pickle(path: str | Path, obj: Any) -> Path:
    def _dump(p: Path) -> None:
        with open(p, "wb") as fh:
            pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)

    return _write_with(path, _dump)


def read_pickle(path: str | Path) -> Any:
    with open(path, "rb") as fh:
        return pickle.load(fh)  # noqa: S301 - our own products, written by write_pickle


def replace_dir(staging: Path, target: Path) -> None:
    """Swap a fully written staging directory into `target`, dropping the old one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}{OLD}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def staging_dir(target: str | Path) -> Path:
    """A fresh empty directory beside `target`, for building its new contents."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=STAGING, dir=target.parent))
    os.chmod(folder, 0o777 & ~_umask())
    return folder


def sweep_partial_writes(folders: list[str | Path]) -> list[Path]:
    """Remove what an interrupted writer left: temporary files, staging and swapped-out folders.

    Only safe while no writer runs, i.e. under the build lock. Returns what was removed.
    """
    removed = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob(".*")):
            partial_file = path.is_file() and path.name.endswith(TMP)
            partial_dir = path.is_dir() and path.name.endswith((STAGING, OLD))
            if partial_file or partial_dir:
                if partial_dir:
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
