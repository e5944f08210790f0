"""The request archive: every answered record on disk at once, in Parquet files soon after.

Rows are appended as JSON lines to a segment file (`.segments/` in the archive folder) and
handed to the operating system straight away, so a killed service, even by kill -9, loses only
the records still on their way to this process; the segment is also synced to the disk every
`sync_seconds`. When a file's worth of rows (`rotate_rows`) or age (`rotate_seconds`) is
reached, the segment is compacted into one Parquet file (written under a temporary name, then
renamed) and deleted.

A segment left behind by a process that died is compacted by the next archive started on the
folder. The writer of a segment holds a lock on it from before the segment has the name
compaction looks for, and a compacted segment is named by its Parquet file. So two archives on
one folder never take a live segment or compact one twice, and compacting again after a crash
rewrites the same file.

A row that Parquet cannot hold goes to `dead-letter.jsonl` with the reason and never takes the
others with it. While the folder cannot be written, rows wait in memory up to `buffer_bytes`;
rows beyond that are dropped and counted, and `error` says why.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from .. import storage
from ..records import FILE_PREFIX, SEGMENT_PREFIX, SEGMENT_SUFFIX, SEGMENTS

DEAD_LETTER = "dead-letter.jsonl"
#: Lines read at once when a segment is compacted, each chunk a row group of its file: the
#: compaction holds one chunk as Python objects (and the segment in Arrow's columns, a few
#: times smaller), never the whole segment as Python objects.
CHUNK_ROWS = 10_000
OPENING = "opening-"  # a segment not yet locked by its writer


@dataclass(frozen=True)
class ArchiveSettings:
    folder: str
    rotate_rows: int = 100_000
    rotate_seconds: float = 3600.0
    sync_seconds: float = 1.0
    buffer_bytes: int = 64 * 2**20


@dataclass
class Counts:
    """Rows since the archive started: on disk, dropped, dead-lettered; files compacted."""

    written: int = 0
    dropped: int = 0
    dead_letter: int = 0
    files: int = 0
    recovered: int = 0  # rows of segments left behind by an earlier process

    def take(self) -> dict[str, int]:
        """The counts so far, and zero from now on (each report carries what is new)."""
        out = dict(vars(self))
        for key in out:
            setattr(self, key, 0)
        return out


def _line(row: dict) -> bytes:
    # ASCII escapes keep any text the service accepted, lone surrogates included, on one line
    return (json.dumps(row, ensure_ascii=True, default=str) + "\n").encode("ascii")


class Archive:
    """Segments of JSON lines, compacted into Parquet files; see the module's docstring."""

    def __init__(self, settings: ArchiveSettings, clock=time.monotonic):
        self.settings, self.clock = settings, clock
        self.folder = Path(settings.folder)
        self.counts = Counts()
        self.write_error: str | None = None  # rows cannot reach the disk
        self.compact_error: str | None = None  # segments cannot become Parquet files
        self._buffer = bytearray()  # lines not yet written (the folder could not be written)
        self._fd: int | None = None
        self._path: Path | None = None
        self._rows = 0  # in the open segment
        self._opened = self._synced = self._retried = clock()
        self._seq = 0
        self.compact_leftovers()

    # -- writing ---------------------------------------------------------------------------

    def add(self, rows: list[dict]) -> Path | None:
        """Append `rows` to the segment; the Parquet file written if that made one due."""
        lines = b"".join(_line(row) for row in rows)
        if len(self._buffer) + len(lines) > self.settings.buffer_bytes:
            self.counts.dropped += len(rows)
            return None
        self._buffer += lines
        self._write()
        return self.rotate() if self.due() else None

    @property
    def error(self) -> str | None:
        """Why records cannot be kept now, or None."""
        return self.write_error or self.compact_error

    def _write(self) -> None:
        """Hand the buffered lines to the operating system; what fails stays buffered."""
        if not self._buffer:
            return
        try:
            if self._fd is None:
                self._open()
            while self._buffer:
                n = os.write(self._fd, self._buffer)
                written = self._buffer[:n].count(b"\n")
                self.counts.written += written
                self._rows += written
                del self._buffer[:n]
            self.write_error = None
        except OSError as exc:
            self.write_error = f"cannot write the request archive in {self.folder}: {_why(exc)}"

    def _open(self) -> None:
        folder = self.folder / SEGMENTS
        folder.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        # unique across machines and containers sharing the folder (their pids may be equal)
        name = (f"{SEGMENT_PREFIX}{stamp}-{os.getpid()}-{self._seq:05d}-{os.urandom(6).hex()}"
                f"{SEGMENT_SUFFIX}")  # fmt: skip
        # made and locked under a name no compaction looks for, then linked under its own
        # (the lock goes with the file; a name that exists is an error, never replaced):
        # another archive on the folder never sees it unlocked, so never takes it for a dead
        # writer's empty segment while rows are on their way into it
        opening = folder / f"{OPENING}{name}"
        fd = os.open(opening, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            path = folder / name
            os.link(opening, path)
            _sync_folder(folder)  # the name survives a power cut before rows go in
        except OSError:
            os.close(fd)
            raise
        finally:
            opening.unlink(missing_ok=True)
        self._fd, self._path, self._rows = fd, path, 0
        self._opened = self._synced = self.clock()

    def due(self) -> bool:
        full = self._rows >= self.settings.rotate_rows
        old = self.clock() - self._opened >= self.settings.rotate_seconds
        return self._fd is not None and self._rows > 0 and (full or old)

    def tick(self) -> Path | None:
        """Call often: syncs the segment, retries what failed, rotates an old segment."""
        now = self.clock()
        if self._fd is not None and now - self._synced >= self.settings.sync_seconds:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                self.write_error = f"cannot sync the request archive in {self.folder}: {_why(exc)}"
            self._synced = now
        if self.error and now - self._retried >= self.settings.sync_seconds:
            self._retried = now
            self._write()
            self.compact_leftovers()
        return self.rotate() if self.due() else None

    def rotate(self) -> Path | None:
        """Close the segment and compact it into a Parquet file (None if nothing to write)."""
        if self._fd is None:
            return None
        path, fd = self._path, self._fd
        self._fd = self._path = None
        try:
            os.fsync(fd)
        except OSError:
            pass  # compaction reads it back either way
        os.close(fd)  # releases the lock: a compaction elsewhere may take it, once
        if not self._rows:
            path.unlink(missing_ok=True)
            return None
        made, _ = self._compact(path)
        self.compact_leftovers()  # any that failed before
        return made

    def close(self) -> None:
        """Write what is buffered, then compact the open segment."""
        if self._buffer:
            self._write()
        self.rotate()

    # -- compacting ------------------------------------------------------------------------

    def compact_leftovers(self) -> list[Path]:
        """Compact every segment in the folder that no live archive is writing: those left
        behind by a process that died, and those whose compaction failed before."""
        folder = self.folder / SEGMENTS
        if not folder.is_dir():
            return []
        found = []
        self.compact_error = None
        for path in sorted(folder.glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}")):
            if path != self._path:
                made, rows = self._compact(path)
                self.counts.recovered += rows
                found += [made] if made else []
        return found

    def _compact(self, path: Path) -> tuple[Path | None, int]:
        """One segment into `requests-….parquet` under the segment's lock, and the rows it
        held; (None, 0) if another process has it or it is gone; the segment stays, with
        `compact_error` set, if the file cannot be written."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None, 0
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None, 0  # a live archive is writing it
            try:
                if os.stat(path).st_ino != os.fstat(fd).st_ino:
                    return None, 0
            except FileNotFoundError:
                return None, 0  # compacted by another process while we waited
            target = self.folder / (FILE_PREFIX + path.name.removeprefix(SEGMENT_PREFIX)
                                    .removesuffix(SEGMENT_SUFFIX) + ".parquet")  # fmt: skip
            try:
                with os.fdopen(os.dup(fd), "rb") as fh:
                    made, rows = self._write_rows(target, fh)
                release_memory()  # what the chunks took, once they are gone
            except OSError as exc:
                self.compact_error = (f"cannot write the request archive in {self.folder}: "
                                      f"{_why(exc)}")  # fmt: skip
                return None, 0
            except Exception as exc:  # noqa: BLE001 - the segment stays, readable, and is said
                self.compact_error = (f"cannot compact {path.name} in {self.folder}: "
                                      f"{type(exc).__name__}: {exc}")  # fmt: skip
                return None, 0
            path.unlink()
            return made, rows
        finally:
            os.close(fd)

    def _write_rows(self, target: Path, lines) -> tuple[Path | None, int]:
        """A segment's `lines` as one Parquet file, read CHUNK_ROWS at a time, each chunk a
        row group; rows Parquet cannot hold, and lines that are not JSON (a line cut short by
        a kill), into the dead-letter file with the reason. The file and the rows read."""
        dead, tables, read = [], [], 0
        while chunk := list(itertools.islice(lines, CHUNK_ROWS)):
            rows, bad = _parse(chunk)
            read += len(rows)
            dead += [{"reason": "not a whole JSON line (cut short when the process was killed?)",
                      "line": line.decode("ascii", "replace")} for line in bad]  # fmt: skip
            if rows:
                tables.append(_table(rows, dead))
        tables = [t for t in tables if t is not None]
        if tables:  # first: a write that fails is retried and adds no dead letter
            _write_tables(target, tables)
            self.counts.files += 1
        if dead:
            with open(self.folder / DEAD_LETTER, "ab") as fh:
                fh.write(b"".join(_line(d) for d in dead))
                fh.flush()
                os.fsync(fh.fileno())
            self.counts.dead_letter += len(dead)
        return (target if tables else None), read


def _parse(lines: list[bytes]) -> tuple[list[dict], list[bytes]]:
    """The rows of a segment's lines, and the lines that are not JSON objects."""
    rows, bad = [], []
    for line in lines:
        line = line.rstrip(b"\n")
        if line:
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            (rows.append(row) if isinstance(row, dict) else bad.append(line))
    return rows, bad


def _table(rows: list[dict], dead: list[dict]):
    """Rows as an Arrow table; the rows it cannot hold go to `dead`, with the reason."""
    try:
        return _arrow(rows)
    except Exception:  # noqa: BLE001 - find the rows Parquet refuses; keep every other
        good = []
        for row in rows:
            try:
                _arrow([row])
                good.append(row)
            except Exception as exc:  # noqa: BLE001
                dead.append({"reason": f"{type(exc).__name__}: {exc}", "row": row})
        return _arrow(good) if good else None


def _arrow(rows: list[dict]):
    """Archive rows as an Arrow table. A column with no value in these rows has no type yet:
    the file's schema takes it from the other chunks (a string column if none has one)."""
    import pyarrow as pa

    df = pd.DataFrame.from_records(rows)
    df["received_at"] = pd.to_datetime(df["received_at"], unit="s", utc=True)
    text = df.select_dtypes(include=object).columns
    df[text] = df[text].astype("string")
    table = pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(None)
    for i, name in enumerate(table.column_names):
        if table.column(i).null_count == len(table):
            table = table.set_column(i, pa.field(name, pa.null()), pa.nulls(len(table)))
    return table


def _write_tables(target: Path, tables: list) -> None:
    """Chunks of one segment as one Parquet file, each chunk a row group, synced before it
    takes its name (the segment is deleted next). The chunks' columns are brought to one
    schema: a column a chunk lacks is null there, an integer column another chunk holds as
    floats is floats; types no schema can join (text in one chunk, numbers in another) make
    the whole segment go as one table, as pandas reads it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pa.unify_schemas([t.schema for t in tables], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        frame = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
        text = frame.select_dtypes(include=object).columns
        frame[text] = frame[text].astype("string")
        tables = [pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)]
        schema = tables[0].schema
    schema = pa.schema([pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f
                        for f in schema])  # fmt: skip
    with storage.atomic_path(target) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for table in tables:
                writer.write_table(
                    pa.Table.from_arrays(
                        [
                            table.column(f.name).cast(f.type)
                            if f.name in table.column_names
                            else pa.nulls(len(table), f.type)
                            for f in schema
                        ],
                        schema=schema,
                    )
                )
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())


def release_memory() -> None:
    """Give the memory a large piece of work freed back to the operating system: Arrow's pool
    and the C allocator keep it otherwise, and a process that compacts a segment, or reads
    the archive, every few minutes would stay as large as its largest such piece."""
    import ctypes

    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: its allocator returns memory its own way
        pass


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)
