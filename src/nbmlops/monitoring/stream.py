"""Batch files read, scored and sampled in chunks: memory is bounded by the chunk, not the batch.

A batch of millions of rows is read from its Parquet file `chunk_rows` rows at a time. Each
chunk is scored (or given its scores) and dropped; what stays is one probability and label per
row, for the performance metrics, the counts of category values training never saw, and a
uniform sample of `max_rows` scored rows, drawn before reading (the file says how many rows each
batch holds), for evidently's drift report (docs/monitoring-at-scale.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import metrics as m
from ..errors import DataError, Problem
from ..spec import BATCH, CONTROL, THRESHOLD, FeatureSpec


@dataclass
class Streamed:
    rows: int
    proba: np.ndarray
    target: np.ndarray | None  # float (NaN: no label); None when the file holds no labels
    sample: pd.DataFrame  # scored rows (metrics.scored_frame), at most max_rows of them
    unseen: dict[str, pd.Series] = field(default_factory=dict)  # value -> rows, per column

    @property
    def labelled(self) -> bool:
        """Every row has a label."""
        return self.target is not None and not np.isnan(self.target).any()

    @property
    def both_classes(self) -> bool:
        """Labels of both classes: what classification performance needs to be measured."""
        return self.labelled and len(np.unique(self.target)) == 2


def parquet(path: str | Path):
    """A Parquet file opened for reading in chunks."""
    import pyarrow.parquet as pq

    # pre_buffer off: with it, pyarrow keeps every chunk it read until the file is done
    return pq.ParquetFile(path, pre_buffer=False)


def _runs(names: np.ndarray) -> list[tuple[str, int, int]]:
    """(name, start, end) of each run of equal values, in order."""
    if not len(names):
        return []
    starts = np.flatnonzero(np.r_[True, names[1:] != names[:-1]])
    ends = np.r_[starts[1:], len(names)]
    return [(str(names[s]), int(s), int(e)) for s, e in zip(starts, ends, strict=True)]


def batch_index(path: str | Path, chunk_rows: int = m.CHUNK_ROWS) -> dict[str, tuple[int, str]]:
    """Rows and control label of each batch of a batches file (the BATCH column), in file order.

    A batch's rows must lie together: every reader here takes them in one pass."""
    source = parquet(path)
    columns = [BATCH] + ([CONTROL] if CONTROL in source.schema_arrow.names else [])
    found: dict[str, tuple[int, str]] = {}
    last = None
    for chunk in source.iter_batches(batch_size=chunk_rows, columns=columns):
        names = chunk.column(BATCH).to_numpy(zero_copy_only=False)
        control = chunk.column(CONTROL).to_numpy(zero_copy_only=False) if len(columns) > 1 else None
        for name, start, end in _runs(names):
            if name == last:
                found[name] = (found[name][0] + end - start, found[name][1])
                continue
            if name in found:
                said = f"the rows of batch {name!r} are not together; a batch is one run of rows"
                raise DataError(Problem(str(path), BATCH, said))
            found[name] = (end - start, "" if control is None else str(control[start]))
            last = name
    return found


def pieces(path: str | Path, columns: list[str], name: str | None = None,
           chunk_rows: int = m.CHUNK_ROWS) -> Iterator[tuple[str, pd.DataFrame]]:  # fmt: skip
    """(window, rows) of a Parquet file in file order, at most `chunk_rows` rows each: the
    whole file as the window `name`, or, without a name, one window per batch (BATCH).

    A column of `columns` the file lacks is an error, except the target of unlabelled rows."""
    source = parquet(path)
    have = set(source.schema_arrow.names)
    missing = [c for c in columns if c not in have]
    if missing:
        raise DataError([Problem(str(path), c, "missing; the models need it") for c in missing])
    wanted = columns + ([BATCH] if name is None and BATCH not in columns else [])
    for chunk in source.iter_batches(batch_size=chunk_rows, columns=wanted):
        frame = chunk.to_pandas()
        if name is not None:
            yield name, frame
            continue
        for window, start, end in _runs(frame[BATCH].to_numpy()):
            yield window, frame.iloc[start:end]


def count_unseen(known: dict[str, set], rows: pd.DataFrame) -> dict[str, pd.Series]:
    """Per categorical feature, the rows of each value outside `known` (the values training saw)."""
    found = {}
    for col, seen in known.items():
        new = rows[col].dropna()
        new = new[~new.isin(seen)]
        if len(new):
            found[col] = new.astype(str).value_counts()
    return found


def unseen_summary(counts: dict[str, pd.Series], top: int = 20) -> dict:
    """Per column with unseen values: their rows, and the `top` commonest with counts."""
    return {col: {"rows": int(c.sum()),
                  "values": {str(k): int(v) for k, v in c.sort_values(ascending=False,
                                                                       kind="stable").head(top).items()}}
            for col, c in counts.items()}  # fmt: skip


class Gather:
    """One batch taken in chunks: its probabilities, labels, unseen values and a uniform sample
    of `max_rows` scored rows (every row when `max_rows` is 0 or the batch is smaller)."""

    def __init__(self, rows: int, spec: FeatureSpec, max_rows: int, seed: int = 0,
                 known: dict[str, set] | None = None, proba: np.ndarray | None = None):  # fmt: skip
        self.rows, self.spec, self.known = rows, spec, known
        self.keep = None
        if 0 < max_rows < rows:
            self.keep = np.sort(np.random.default_rng(seed).choice(rows, max_rows, replace=False))
        self.proba = np.empty(rows, dtype=np.float64) if proba is None else proba
        if len(self.proba) != rows:
            raise ValueError(f"{len(self.proba)} scores for a batch of {rows} rows")
        self.target: np.ndarray | None = None
        self.picked: list[pd.DataFrame] = []
        self.unseen: dict[str, pd.Series] = {}
        self.start = 0

    def add(self, frame: pd.DataFrame, proba: np.ndarray | None = None) -> None:
        """The next rows of the batch, with their scores unless the batch came with them."""
        start, end = self.start, self.start + len(frame)
        if proba is not None:
            self.proba[start:end] = proba
        if self.spec.target in frame:
            if self.target is None:
                self.target = np.full(self.rows, np.nan)
            self.target[start:end] = frame[self.spec.target].to_numpy(dtype=np.float64,
                                                                      na_value=np.nan)  # fmt: skip
        scores, chosen = self.proba[start:end], frame
        if self.keep is not None:
            local = self.keep[(self.keep >= start) & (self.keep < end)] - start
            scores, chosen = scores[local], frame.iloc[local]
        columns = self.spec.columns + ([self.spec.target] if self.spec.target in frame else [])
        self.picked.append(chosen[columns].assign(**{m.PROBA: scores}))
        for col, counts in count_unseen(self.known or {}, frame).items():
            before = self.unseen.get(col)
            self.unseen[col] = counts if before is None else before.add(counts, fill_value=0)
        self.start = end

    def done(self) -> Streamed:
        if self.start != self.rows:
            raise ValueError(f"{self.start} rows read of a batch of {self.rows}")
        sample = pd.concat(self.picked, ignore_index=True)
        sample[m.PRED] = (sample[m.PROBA] >= THRESHOLD).astype(int)
        return Streamed(self.rows, self.proba, self.target, sample, self.unseen)


def from_frame(rows: pd.DataFrame, proba: np.ndarray, spec: FeatureSpec, max_rows: int,
               seed: int = 0, known: dict[str, set] | None = None) -> Streamed:  # fmt: skip
    """A batch already in memory, taken as a streamed one is."""
    gathered = Gather(len(rows), spec, max_rows, seed, known, np.asarray(proba, dtype=np.float64))
    gathered.add(rows)
    return gathered.done()


def score_file(model, path: str | Path, spec: FeatureSpec, max_rows: int,
               chunk_rows: int = m.CHUNK_ROWS, seed: int = 0) -> Streamed:  # fmt: skip
    """Score every row of a Parquet batch file in chunks; keep probabilities, labels and a
    uniform sample of scored rows (every row when `max_rows` is 0 or the file is smaller)."""
    source = parquet(path)
    labelled = spec.target in source.schema_arrow.names
    gathered = Gather(source.metadata.num_rows, spec, max_rows, seed)
    columns = spec.columns + ([spec.target] if labelled else [])
    for _, frame in pieces(path, columns, name="batch", chunk_rows=chunk_rows):
        gathered.add(frame, m.predict_proba(model, frame, spec, chunk_rows))
    return gathered.done()


def batches(path: str | Path, spec: FeatureSpec, names: list[str],
            index: dict[str, tuple[int, str]], max_rows: int, seeds: dict[str, int],
            known: dict[str, set], proba_of,
            chunk_rows: int = m.CHUNK_ROWS) -> Iterator[tuple[str, Streamed]]:  # fmt: skip
    """The batches `names` of a batches file (`index`: `batch_index` of it), in one pass of
    chunks, each given its served probabilities by `proba_of(name)`: one batch at a time is
    held, as its probabilities, labels, unseen values and sample (`Gather`)."""
    labelled = spec.target in parquet(path).schema_arrow.names
    columns = spec.columns + ([spec.target] if labelled else [])
    wanted, current, gathered = set(names), None, None
    for name, frame in pieces(path, columns, chunk_rows=chunk_rows):
        if name not in wanted:
            continue
        if name != current:
            if gathered is not None:
                yield current, gathered.done()
            proba = np.asarray(proba_of(name), dtype=np.float64)
            current = name
            gathered = Gather(index[name][0], spec, max_rows, seeds[name], known, proba)
        gathered.add(frame)
    if gathered is not None:
        yield current, gathered.done()
