"""Batch files read, scored and sampled in chunks: memory is bounded by the chunk, not the batch.

A batch of millions of rows is read from its Parquet file `chunk_rows` rows at a time, beside
the served model's probabilities from the score task's file. Each chunk is counted and dropped;
what stays is the labels and probabilities as counts for the performance metrics (`Tally`),
the counts of category values training never saw, and a uniform sample of `max_rows` scored
rows, drawn before reading (the file says how many rows each batch holds), for evidently's
drift report (docs/monitoring-at-scale.md)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError, Problem
from ..metrics import scores as m
from ..metrics.tally import Tally
from ..spec import BATCH, CONTROL, THRESHOLD, FeatureSpec


@dataclass
class Streamed:
    rows: int
    tally: Tally  # labels and probabilities of every row, as counts
    sample: pd.DataFrame  # scored rows (metrics.scored_frame), at most max_rows of them
    unseen: dict = field(default_factory=dict)  # `unseen_summary` of the batch


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


def schema(path: str | Path, columns: list[str]):
    """The Arrow schema of a Parquet file that must hold `columns`; one it lacks is an error."""
    found = parquet(path).schema_arrow
    missing = [c for c in columns if c not in found.names]
    if missing:
        raise DataError([Problem(str(path), c, "missing; the models need it") for c in missing])
    return found


def pieces(path: str | Path, columns: list[str], name: str | None = None,
           chunk_rows: int = m.CHUNK_ROWS,
           optional: tuple[str, ...] = ()) -> Iterator[tuple[str, pd.DataFrame]]:  # fmt: skip
    """(window, rows) of a Parquet file in file order, at most `chunk_rows` rows each: the
    whole file as the window `name`, or, without a name, one window per batch (BATCH).

    A column of `columns` the file lacks is an error; one of `optional` (the target of
    unlabelled rows) is read where the file has it."""
    source = parquet(path)
    have = schema(path, columns).names
    wanted = columns + [c for c in optional if c in have]
    wanted += [BATCH] if name is None and BATCH not in wanted else []
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


def unseen_summary(counts: dict[str, pd.Series], top: int = 20,
                   rows: dict[str, int] | None = None) -> dict:  # fmt: skip
    """Per column with unseen values: their rows (`rows`, or the counts' sum), and the `top`
    commonest with counts."""
    return {col: {"rows": int(c.sum() if rows is None else rows[col]),
                  "values": {str(k): int(v) for k, v in _commonest(c, top).items()}}
            for col, c in counts.items()}  # fmt: skip


def _commonest(counts: pd.Series, top: int) -> pd.Series:
    """The `top` largest counts; equal counts in the order of their values, so the same values
    are kept whatever the chunks."""
    return counts.sort_index(kind="stable").sort_values(ascending=False, kind="stable").head(top)


#: Distinct unseen values a batch keeps counts of per column, the commonest: values that turn
#: into identifiers would otherwise grow with the rows (their total is counted apart).
UNSEEN_KEPT = 10_000


class Gather:
    """One batch taken in chunks: its labels and probabilities as counts (`Tally`), the values
    training never saw, and a uniform sample of `max_rows` scored rows (every row when
    `max_rows` is 0 or the batch is smaller), drawn before the first chunk."""

    def __init__(self, rows: int, spec: FeatureSpec, max_rows: int, seed: int = 0,
                 known: dict[str, set] | None = None):  # fmt: skip
        self.rows, self.spec, self.known = rows, spec, known
        self.keep = None
        if 0 < max_rows < rows:
            self.keep = np.sort(np.random.default_rng(seed).choice(rows, max_rows, replace=False))
        self.tally = Tally()
        self.picked: list[pd.DataFrame] = []
        self.unseen: dict[str, pd.Series] = {}
        self.unseen_rows: dict[str, int] = {}
        self.start = 0

    def add(self, frame: pd.DataFrame, proba: np.ndarray, threshold=THRESHOLD) -> None:
        """The next rows of the batch, the served model's probabilities of them and its
        decision threshold (one, or one per row)."""
        start, end = self.start, self.start + len(frame)
        proba = np.asarray(proba, dtype=np.float64)
        at = np.broadcast_to(np.asarray(threshold, dtype=np.float64), proba.shape)
        labelled = self.spec.target in frame
        labels = frame[self.spec.target].to_numpy(dtype=np.float64, na_value=np.nan) if labelled \
            else np.full(len(frame), np.nan)  # fmt: skip
        self.tally.add(labels, proba, at)
        scores, chosen, chosen_at = proba, frame, at
        if self.keep is not None:
            local = self.keep[(self.keep >= start) & (self.keep < end)] - start
            scores, chosen, chosen_at = proba[local], frame.iloc[local], at[local]
        columns = self.spec.columns + ([self.spec.target] if labelled else [])
        decided = (scores >= chosen_at).astype(int)  # at the answering model's threshold
        self.picked.append(chosen[columns].assign(**{m.PROBA: scores, m.PRED: decided}))
        for col, counts in count_unseen(self.known or {}, frame).items():
            before = self.unseen.get(col)
            merged = counts if before is None else before.add(counts, fill_value=0)
            self.unseen[col] = _commonest(merged, UNSEEN_KEPT)
            self.unseen_rows[col] = self.unseen_rows.get(col, 0) + int(counts.sum())
        self.start = end

    def done(self) -> Streamed:
        if self.start != self.rows:
            raise ValueError(f"{self.start} rows read of a batch of {self.rows}")
        sample = pd.concat(self.picked, ignore_index=True)
        unseen = unseen_summary(self.unseen, rows=self.unseen_rows)
        return Streamed(self.rows, self.tally, sample, unseen)


def from_frame(rows: pd.DataFrame, proba: np.ndarray, spec: FeatureSpec, max_rows: int,
               seed: int = 0, known: dict[str, set] | None = None,
               threshold=THRESHOLD) -> Streamed:  # fmt: skip
    """A batch already in memory, taken as a streamed one is."""
    gathered = Gather(len(rows), spec, max_rows, seed, known)
    gathered.add(rows, proba, threshold)
    return gathered.done()


class Scores:
    """The served model's probabilities and decision thresholds in a scores file, read
    forward in chunks, window by window in the file's order."""

    COLUMNS = ["served_proba", "served_threshold"]

    def __init__(self, path: str | Path, chunk_rows: int = m.CHUNK_ROWS):
        self.path = path
        self.pieces = pieces(path, self.COLUMNS, chunk_rows=chunk_rows)
        self.window, self.left = None, np.empty((0, 2))

    def take(self, window: str, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """The next `rows` (probability, threshold) of `window`; rows of windows before it are
        passed."""
        out, need = [], rows
        while need:
            if self.window != window or not len(self.left):
                found = next(self.pieces, None)
                if found is None:
                    said = f"has {rows - need} of the {rows} rows of batch {window!r}"
                    raise DataError(Problem(str(self.path), BATCH, f"{said}; score again"))
                self.window = found[0]
                self.left = found[1][self.COLUMNS].to_numpy(dtype=np.float64)
                continue
            out.append(self.left[:need])
            self.left, need = self.left[need:], need - len(out[-1])
        both = np.concatenate(out) if out else np.empty((0, 2))
        return both[:, 0], both[:, 1]


def batches(path: str | Path, spec: FeatureSpec, names: list[str],
            index: dict[str, tuple[int, str]], max_rows: int, seeds: dict[str, int],
            known: dict[str, set], scores: str | Path,
            chunk_rows: int = m.CHUNK_ROWS) -> Iterator[tuple[str, Streamed]]:  # fmt: skip
    """The batches `names` of a batches file (`index`: `batch_index` of it), with the served
    model's probabilities from the score task's file, in one pass of chunks over both: one
    batch at a time is held, as its counts, unseen values and sample (`Gather`)."""
    served = Scores(scores, chunk_rows)
    wanted, current, gathered = set(names), None, None
    for name, frame in pieces(path, spec.columns, chunk_rows=chunk_rows, optional=(spec.target,)):
        if name not in wanted:
            continue
        if name != current:
            if gathered is not None:
                yield current, gathered.done()
            current = name
            gathered = Gather(index[name][0], spec, max_rows, seeds[name], known)
        gathered.add(frame, *served.take(name, len(frame)))
    if gathered is not None:
        yield current, gathered.done()
