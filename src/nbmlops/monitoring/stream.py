"""One batch file scored and monitored in chunks: memory is bounded by the chunk, not the batch.

A batch of millions of rows is read from its Parquet file `chunk_rows` rows at a time. Each
chunk is scored and dropped; what stays is one probability (and label) per row, for the
performance metrics, and a uniform sample of `max_rows` scored rows, drawn before reading (the
file says how many rows it holds), for evidently's drift report (docs/monitoring-at-scale.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import metrics as m
from ..errors import DataError, Problem
from ..spec import THRESHOLD, FeatureSpec


@dataclass
class Streamed:
    rows: int
    proba: np.ndarray
    target: np.ndarray | None  # float (NaN: no label); None when the file holds no labels
    sample: pd.DataFrame  # scored rows (metrics.scored_frame), at most max_rows of them


def score_file(model, path: str | Path, spec: FeatureSpec, max_rows: int,
               chunk_rows: int = m.CHUNK_ROWS, seed: int = 0) -> Streamed:  # fmt: skip
    """Score every row of a Parquet batch file in chunks; keep probabilities, labels and a
    uniform sample of scored rows (every row when `max_rows` is 0 or the file is smaller)."""
    import pyarrow.parquet as pq

    # pre_buffer off: with it, pyarrow keeps every chunk it read until the file is done
    source = pq.ParquetFile(path, pre_buffer=False)
    names = set(source.schema_arrow.names)
    missing = [c for c in spec.columns if c not in names]
    if missing:
        raise DataError([Problem(str(path), c, "missing; the models need it") for c in missing])
    labelled = spec.target in names
    rows = source.metadata.num_rows
    keep = None
    if 0 < max_rows < rows:
        keep = np.sort(np.random.default_rng(seed).choice(rows, max_rows, replace=False))
    proba = np.empty(rows, dtype=np.float64)
    target = np.empty(rows, dtype=np.float64) if labelled else None
    picked, start = [], 0
    columns = spec.columns + ([spec.target] if labelled else [])
    for batch in source.iter_batches(batch_size=chunk_rows, columns=columns):
        frame = batch.to_pandas()
        end = start + len(frame)
        proba[start:end] = m.predict_proba(model, frame, spec, chunk_rows)
        if labelled:
            target[start:end] = frame[spec.target].to_numpy(dtype=np.float64, na_value=np.nan)
        local = (keep[(keep >= start) & (keep < end)] - start) if keep is not None else None
        chosen = frame if local is None else frame.iloc[local]
        picked.append(chosen.assign(**{m.PROBA: proba[start:end][local]
                                       if local is not None else proba[start:end]}))  # fmt: skip
        start = end
    sample = pd.concat(picked, ignore_index=True)
    sample[m.PRED] = (sample[m.PROBA] >= THRESHOLD).astype(int)
    return Streamed(rows, proba, target, sample)
