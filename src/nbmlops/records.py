"""The request archive and its labels as files: the names and readers that the service (which
writes them) and monitoring (which reads them) share.

The archive folder holds `requests-*.parquet` files, segments of newer rows in `.segments/`
(JSON lines, compacted into a Parquet file and then deleted), and `labels.jsonl`: one line per
outcome that arrived after the answer, appended, never rewritten. A row of the archive is
one answered record, keyed by `request_id` and `record` (its place in the request).

A request id sorts by the time it was given (`new_request_id`), so each archive file covers a
range of ids and `Finder` reads only the files that can hold the ids it is asked for.
"""

from __future__ import annotations

import json
import secrets
import time
from bisect import bisect_left
from pathlib import Path

import pandas as pd

SEGMENTS = ".segments"
#: Name parts of a segment, and of the Parquet file it becomes.
SEGMENT_PREFIX, SEGMENT_SUFFIX, FILE_PREFIX = "segment-", ".jsonl", "requests-"
LABELS_FILE = "labels.jsonl"
KEY = ["request_id", "record"]
#: When a record was answered: a time in UTC as the reader returns it.
RECEIVED_AT = "received_at"
#: A label's outcome, and when it arrived.
OUTCOME, LABELLED_AT = "outcome", "labelled_at"


def new_request_id() -> str:
    """32 hex digits: the milliseconds since the epoch, then 80 random bits. Ids sort by the
    time they were given (as UUIDv7 does)."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def request_id_of(line: str) -> str | None:
    """The request id a row's JSON line starts with (an archive row and a label both begin
    `{"request_id": "..."`), without parsing the line; None for another line."""
    parts = line.split('"', 4)
    return parts[3] if len(parts) > 4 and parts[1] == "request_id" else None


def json_lines(path: Path) -> list[dict]:
    """Every whole JSON line of a file; a line cut off by a crash is left out."""
    rows = []
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):  # compacted meanwhile; no folder yet
        return rows
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def read_archive(folder: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Every archived record of the folder, once: the Parquet files and the segments not yet
    compacted (a segment compacted while it was read appears in both; the key keeps one).
    `received_at` is a time in UTC from either."""
    folder = Path(folder)
    # segments first: one compacted meanwhile is then found as its Parquet file
    rows = [r for p in sorted((folder / SEGMENTS).glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}"))
            for r in json_lines(p)]  # fmt: skip
    frames = [_read_file(p, columns) for p in sorted(folder.glob(f"{FILE_PREFIX}*.parquet"))]
    if rows:
        frames.append(_segment_frame(rows, columns))
    if not frames:
        return pd.DataFrame(columns=columns or KEY)
    return pd.concat(frames, ignore_index=True).drop_duplicates(KEY, keep="first")


def _segment_frame(rows: list[dict], columns: list[str] | None) -> pd.DataFrame:
    """Rows of segments as a frame (of `columns`, when given), `received_at` as a Parquet file
    holds it: seconds in a segment, a time in UTC in a file."""
    segment = pd.DataFrame(rows)
    if RECEIVED_AT in segment:
        segment[RECEIVED_AT] = pd.to_datetime(segment[RECEIVED_AT], unit="s", utc=True)
    return segment.reindex(columns=columns) if columns else segment


def _read_file(path: Path, columns: list[str] | None, filters=None) -> pd.DataFrame:
    """One archive file (its rows that pass pyarrow's `filters`); of `columns`, those it has
    (a file written before a column existed lacks it: the reader gives it as missing)."""
    if columns is None:
        return pd.read_parquet(path, filters=filters)
    import pyarrow.parquet as pq

    present = set(pq.read_schema(path).names)
    return pd.read_parquet(path, columns=[c for c in columns if c in present],
                           filters=filters).reindex(columns=columns)  # fmt: skip


def read_labels(folder: str | Path) -> tuple[pd.DataFrame, int]:
    """The first label of each record, and how many later lines contradicted a first one
    (a repeat of the same outcome is not counted)."""
    rows = json_lines(Path(folder) / LABELS_FILE)
    frame = pd.DataFrame(rows, columns=[*KEY, OUTCOME, LABELLED_AT])
    first = frame.drop_duplicates(KEY, keep="first")
    merged = frame.merge(first, on=KEY, suffixes=("", "_first"))
    contradicting = int((merged[OUTCOME] != merged[f"{OUTCOME}_first"]).sum())
    return first.reset_index(drop=True), contradicting


class Finder:
    """Archived rows by request id, reading only what can hold them: the Parquet files whose
    range of ids (kept from each file's statistics, read once: a file never changes) takes in
    one of the ids, filtered as they are read, and of the segments only the lines of those ids.

    An archive written before ids sorted by time has files that each span nearly every id;
    those are read (filtered) for every look-up, and the answers are the same."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._ranges: dict[str, tuple[str, str] | None] = {}

    def rows(self, ids, columns: list[str]) -> pd.DataFrame:
        """The archived rows of `ids` (their `columns`, the key among them), each once."""
        wanted = sorted({str(i) for i in ids})
        columns = [*KEY, *[c for c in columns if c not in KEY]]
        if not wanted:
            return pd.DataFrame(columns=columns)
        chosen = set(wanted)
        rows = []
        for path in sorted((self.folder / SEGMENTS).glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}")):
            try:  # line by line: a segment of a hundred thousand rows is never held whole
                with path.open(encoding="utf-8") as fh:
                    for line in fh:
                        if request_id_of(line) in chosen:
                            try:
                                rows.append(json.loads(line))
                            except json.JSONDecodeError:  # cut off by a crash
                                continue
            except (FileNotFoundError, NotADirectoryError):  # compacted meanwhile
                continue
        frames = []
        for path in sorted(self.folder.glob(f"{FILE_PREFIX}*.parquet")):
            span = self._range(path)
            if span is None:
                continue
            at = bisect_left(wanted, span[0])
            if at < len(wanted) and wanted[at] <= span[1]:
                frames.append(_read_file(path, columns, [("request_id", "in", wanted)]))
        if rows:
            frames.append(_segment_frame(rows, columns))
        if not frames:
            return pd.DataFrame(columns=columns)
        found = pd.concat(frames, ignore_index=True)
        return found[found["request_id"].astype(str).isin(chosen)].drop_duplicates(KEY)

    def _range(self, path: Path) -> tuple[str, str] | None:
        """The least and greatest request id of a file (None: it has no rows)."""
        if path.name not in self._ranges:
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(path).metadata
            if "request_id" not in meta.schema.names:  # not an archive file: nothing to find
                self._ranges[path.name] = None
                return None
            column = meta.schema.names.index("request_id")
            spans = []
            for i in range(meta.num_row_groups):
                if meta.row_group(i).num_rows == 0:
                    continue
                stats = meta.row_group(i).column(column).statistics
                known = stats is not None and stats.has_min_max
                # without statistics, the widest range: the file is always read
                spans.append((str(stats.min), str(stats.max)) if known else ("", "\U0010ffff"))
            self._ranges[path.name] = ((min(lo for lo, _ in spans), max(hi for _, hi in spans))
                                       if spans else None)  # fmt: skip
        return self._ranges[path.name]
