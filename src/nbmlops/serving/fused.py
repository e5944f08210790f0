"""A fitted pipeline scored without its ColumnTransformer's per-call bookkeeping.

For a request of one row, scikit-learn's ColumnTransformer spends about 2 ms of a 5.5 ms call
checking input names, indexing columns and dispatching through joblib. `fuse` calls the fitted
column transformers directly and stacks their outputs as ColumnTransformer would, then the
rest of the pipeline. It is used only after it gave the very same probabilities as the
pipeline itself on sample rows; otherwise the pipeline is used as it is.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from ..derived import split_off


class Fused:
    """predict_proba of `pipeline`, its first step's transformers called directly."""

    def __init__(self, pipeline: Pipeline):
        self.derive, steps = split_off(pipeline)
        prep = steps[0][1]
        self.pipeline = pipeline
        self.parts = [(t, list(cols)) for _, t, cols in prep.transformers_
                      if not (isinstance(t, str) and t == "drop") and len(cols)]  # fmt: skip
        self.sparse = prep.sparse_output_
        rest = steps[1:]
        self.rest = rest[0][1] if len(rest) == 1 else Pipeline(rest)

    def transform(self, frame: pd.DataFrame):
        if self.derive is not None:
            frame = self.derive.transform(frame)
        blocks = [frame[cols].to_numpy() if isinstance(t, str) else t.transform(frame[cols])
                  for t, cols in self.parts]  # fmt: skip
        if self.sparse:
            return sparse.hstack([sparse.csr_matrix(b) for b in blocks]).tocsr()
        return np.hstack([b.toarray() if sparse.issparse(b) else b for b in blocks])

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.rest.predict_proba(self.transform(frame))


def fuse(model, sample: pd.DataFrame):
    """The fused scorer when it matches `model` exactly on `sample`, else `model` itself."""
    _, steps = split_off(model)
    if not (isinstance(model, Pipeline) and len(steps) > 1
            and isinstance(steps[0][1], ColumnTransformer)):  # fmt: skip
        return model
    prep = steps[0][1]
    if any(isinstance(t, str) and t == "passthrough" and name == "remainder"
           for name, t, _ in prep.transformers_):  # fmt: skip
        return model
    try:
        fused = Fused(model)
        same = np.array_equal(fused.predict_proba(sample), model.predict_proba(sample))
    except Exception:  # noqa: BLE001 - anything unusual: keep the pipeline as it is
        return model
    return fused if same else model
