"""The request archive and its labels as files: the names and readers that the service (which
writes them) and monitoring (which reads them) share.

The archive folder holds `requests-*.parquet` files, segments of newer rows in `.segments/`
(JSON lines, compacted into a Parquet file and then deleted), and `labels.jsonl`: one line per
outcome that arrived after the answer, appended, never rewritten. A row of the archive is
one answered record, keyed by `request_id` and `record` (its place in the request).
"""

from __future__ import annotations

import json
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
        segment = pd.DataFrame(rows)
        if RECEIVED_AT in segment:  # seconds in a segment; a time in UTC in a Parquet file
            segment[RECEIVED_AT] = pd.to_datetime(segment[RECEIVED_AT], unit="s", utc=True)
        frames.append(segment.reindex(columns=columns) if columns else segment)
    if not frames:
        return pd.DataFrame(columns=columns or KEY)
    return pd.concat(frames, ignore_index=True).drop_duplicates(KEY, keep="first")


def _read_file(path: Path, columns: list[str] | None) -> pd.DataFrame:
    """One archive file; of `columns`, those it has (a file written before a column existed
    lacks it: the reader gives it as missing)."""
    if columns is None:
        return pd.read_parquet(path)
    import pyarrow.parquet as pq

    present = set(pq.read_schema(path).names)
    return pd.read_parquet(path, columns=[c for c in columns if c in present]).reindex(
        columns=columns
    )


def read_labels(folder: str | Path) -> tuple[pd.DataFrame, int]:
    """The first label of each record, and how many later lines contradicted a first one
    (a repeat of the same outcome is not counted)."""
    rows = json_lines(Path(folder) / LABELS_FILE)
    frame = pd.DataFrame(rows, columns=[*KEY, OUTCOME, LABELLED_AT])
    first = frame.drop_duplicates(KEY, keep="first")
    merged = frame.merge(first, on=KEY, suffixes=("", "_first"))
    contradicting = int((merged[OUTCOME] != merged[f"{OUTCOME}_first"]).sum())
    return first.reset_index(drop=True), contradicting
