"""A fitted pipeline compiled for inference, built at registration and stored with the version.

scikit-learn spends milliseconds per call on checks and dispatch whatever the row count. The
compiled form splits a `Pipeline(ColumnTransformer, estimator)` in two:

- the design: the column transformer as tables. A numeric part (imputation, standard scaling or
  passthrough) becomes a fill value, a centre and a scale per column; a categorical part (any
  encoder that encodes each column on its own) becomes, per column, the row it adds for every
  known category, for an unknown one and for a missing one, read off the fitted encoder itself.
- the kernel: the estimator in a runtime made for inference: Treelite for tree ensembles
  (random forests, gradient boosting, histogram gradient boosting with categorical splits),
  ONNX Runtime (converted by skl2onnx) for the rest.

Where the pipeline derives features (`nbmlops.derived`), the derivation runs first, from the
source kept with it. It is one `.npz` file of arrays, bytes and that source (read with pickles
refused; the file is verified by its hash before it is read, as the model is). It is used
only when it
gives the pipeline's probabilities within TOLERANCE on the rows it is checked on: at
registration on the held-out rows, and again where it is loaded.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from ..calibration import Calibrated, apply_map
from ..derived import Derive, Source, split_off

#: Largest absolute difference from the pipeline's probability that a compiled form may give.
#: The kernels are exact up to summation order (about 1e-15 seen); a millionth leaves room for a
#: runtime's float reordering while no metric, reported to four places, can move by it.
TOLERANCE = 1e-6
FILE = "compiled.npz"
#: A value no request holds: it stands for a category the encoder never saw.
UNSEEN = "\x00nbmlops-unseen-category"


class NotCompiled(Exception):
    """The pipeline has a part with no compiled form; the message says which."""


@dataclass
class NumericBlock:
    columns: list[str]
    fill: np.ndarray  # NaN: no imputation
    centre: np.ndarray
    scale: np.ndarray

    def design(self, frame: pd.DataFrame) -> np.ndarray:
        return self._scaled(frame[self.columns].to_numpy(dtype=np.float64, na_value=np.nan))

    def design_records(self, records: list[dict]) -> np.ndarray:
        return self._scaled(np.array([[r[c] for c in self.columns] for r in records],
                                     dtype=np.float64))  # fmt: skip

    def _scaled(self, x: np.ndarray) -> np.ndarray:
        x = np.where(np.isnan(x), self.fill, x)
        return (x - self.centre) / self.scale


@dataclass
class CategoricalBlock:
    columns: list[str]
    categories: list[list]  # per column, the values the encoder knows (None among them)
    base: np.ndarray  # the block's output for the first category of every column
    tables: list[np.ndarray]  # per column: rows for each category, then unseen, then missing

    def __post_init__(self):
        self._index = [{v: i for i, v in enumerate(c)} for c in self.categories]

    def design(self, frame: pd.DataFrame) -> np.ndarray:
        return self._rows(len(frame), (frame[c].tolist() for c in self.columns))

    def design_records(self, records: list[dict]) -> np.ndarray:
        return self._rows(len(records), ([r[c] for r in records] for c in self.columns))

    def _rows(self, n: int, values) -> np.ndarray:
        out = np.repeat(self.base[None, :], n, axis=0)
        for column, index, table in zip(values, self._index, self.tables, strict=True):
            unseen, missing = len(index), len(index) + 1
            out += table[[missing if _nan(v) else index.get(v, unseen) for v in column]]
        return out


@dataclass
class Compiled:
    """predict_proba of a pipeline: its design from tables, its estimator in a kernel."""

    blocks: list
    kernel: str  # treelite or onnxruntime
    model: bytes
    dtype: str  # what the estimator reads: float32 (scikit-learn's trees) or float64
    report: dict
    calibration: dict = field(default_factory=lambda: {"kind": "none"})  # Calibrated.map_
    derive: Derive | None = None  # the user's derivation, run before the blocks

    def __post_init__(self):
        if self.kernel == "treelite":
            import treelite

            self._tree = treelite.Model.deserialize_bytes(self.model)
        else:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = 1
            self._session = ort.InferenceSession(self.model, options,
                                                 providers=["CPUExecutionProvider"])  # fmt: skip
            self._input = self._session.get_inputs()[0].name

    def design(self, frame: pd.DataFrame) -> np.ndarray:
        if self.derive is not None:
            frame = self.derive.transform(frame)
        return self._design(frame)

    def _design(self, frame: pd.DataFrame) -> np.ndarray:
        """The kernel's input from a frame of the model's columns (derived ones included)."""
        return self._cast(np.hstack([b.design(frame) for b in self.blocks]))

    def _cast(self, x: np.ndarray) -> np.ndarray:
        return x.astype(np.float32).astype(np.float64) if self.dtype == "float32" else x

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self._kernel_proba(self.design(frame))

    def predict_records(self, records: list[dict]) -> np.ndarray:
        """predict_proba of request records as they are (field name to value, None for
        missing), with no data frame in between where nothing is derived: what the service
        scores."""
        if self.derive is not None:  # the user's function takes a frame
            return self._kernel_proba(self._design(self.derive.transform_records(records)))
        return self._kernel_proba(self._cast(np.hstack([b.design_records(records)
                                                        for b in self.blocks])))  # fmt: skip

    def _kernel_proba(self, x: np.ndarray) -> np.ndarray:
        if self.kernel == "onnxruntime":
            out = self._session.run(["probabilities"], {self._input: x})[0]
        else:
            import treelite

            out = treelite.gtil.predict(self._tree, x, nthread=1)[:, 0, :]
            out = np.column_stack([1 - out[:, 0], out[:, 0]]) if out.shape[1] == 1 else out
        if self.calibration["kind"] == "none":
            return out
        p = apply_map(self.calibration, out[:, 1])
        return np.column_stack([1 - p, p])

    def to_bytes(self) -> bytes:
        arrays = {"meta": np.array(json.dumps({
            "kernel": self.kernel, "dtype": self.dtype, "report": self.report,
            "calibration": self.calibration,
            "derive": None if self.derive is None else {
                "file": self.derive.source.file, "function": self.derive.source.function,
                "code": self.derive.source.code, "inputs": self.derive.inputs,
                "outputs": self.derive.outputs},
            "blocks": [{"kind": "numeric" if isinstance(b, NumericBlock) else "categorical",
                        "columns": b.columns,
                        **({"categories": [[_plain(v) for v in c] for c in b.categories]}
                           if isinstance(b, CategoricalBlock) else {})}
                       for b in self.blocks],
        })), "model": np.frombuffer(self.model, dtype=np.uint8)}  # fmt: skip
        for i, b in enumerate(self.blocks):
            if isinstance(b, NumericBlock):
                arrays |= {f"{i}.fill": b.fill, f"{i}.centre": b.centre, f"{i}.scale": b.scale}
            else:
                arrays[f"{i}.base"] = b.base
                arrays |= {f"{i}.table.{j}": t for j, t in enumerate(b.tables)}
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Compiled:
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            blocks = []
            for i, b in enumerate(meta["blocks"]):
                if b["kind"] == "numeric":
                    blocks.append(NumericBlock(b["columns"], f[f"{i}.fill"], f[f"{i}.centre"],
                                               f[f"{i}.scale"]))  # fmt: skip
                else:
                    tables = [f[f"{i}.table.{j}"] for j in range(len(b["columns"]))]
                    blocks.append(CategoricalBlock(b["columns"], b["categories"], f[f"{i}.base"],
                                                   tables))  # fmt: skip
            d = meta.get("derive")
            derive = None if d is None else Derive(
                Source(d["file"], d["function"], d["code"]),
                tuple(map(tuple, d["inputs"])), tuple(map(tuple, d["outputs"])))  # fmt: skip
            return cls(blocks, meta["kernel"], f["model"].tobytes(), meta["dtype"], meta["report"],
                       meta.get("calibration") or {"kind": "none"}, derive)  # fmt: skip

    @classmethod
    def read(cls, path: str | Path) -> Compiled:
        return cls.from_bytes(Path(path).read_bytes())


def largest_difference(scorer, pipeline, rows: pd.DataFrame) -> float:
    """The largest absolute difference between two scorers' probabilities on `rows`."""
    return float(np.max(np.abs(scorer.predict_proba(rows) - pipeline.predict_proba(rows))))


def as_records(rows: pd.DataFrame) -> tuple[list[dict], pd.DataFrame]:
    """`rows` as request records (None for missing), and those records as the service's frame
    (float columns as float, the rest as they are): the same rows, both ways the service
    holds them."""
    records = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
    frame = pd.DataFrame({c: np.array([r[c] for r in records],
                                      dtype=float if pd.api.types.is_float_dtype(rows[c])
                                      else object) for c in rows.columns})  # fmt: skip
    return records, frame


def agrees(compiled: Compiled, pipeline, rows: pd.DataFrame) -> tuple[bool, str]:
    """(True, "") when `compiled` gives the pipeline's probabilities on `rows` within TOLERANCE,
    from a frame and from request records; else (False, why)."""
    try:
        diff = largest_difference(compiled, pipeline, rows)
        records, frame = as_records(rows)
        diff = max(diff, float(np.max(np.abs(compiled.predict_records(records)
                                              - pipeline.predict_proba(frame)))))  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - any failure means: do not use it
        return False, f"the compiled form failed on the check rows: {type(exc).__name__}: {exc}"
    if not diff <= TOLERANCE:
        return False, (f"the compiled form differs from the pipeline by {diff:.3g} on the check "
                       f"rows (tolerance {TOLERANCE:g})")  # fmt: skip
    return True, ""


def compile_pipeline(pipeline, rows: pd.DataFrame) -> Compiled:
    """The compiled form of a fitted `pipeline`, checked on `rows` (the held-out rows);
    raises NotCompiled saying which part has no compiled form or how far it differs."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    derive, steps = split_off(pipeline)  # the derivation runs as it is, then the rest
    if not (isinstance(pipeline, Pipeline) and len(steps) == 2
            and isinstance(steps[0][1], ColumnTransformer)):  # fmt: skip
        raise NotCompiled("only a Pipeline([Derive,] ColumnTransformer, estimator) is compiled")
    prep, estimator = steps[0][1], steps[1][1]
    design_rows = rows if derive is None else derive.transform(rows)
    mapped = {"kind": "none"}
    if isinstance(estimator, Calibrated):  # the estimator compiled, its map as numbers
        estimator, mapped = estimator.estimator, estimator.map_
    blocks = []
    for name, part, columns in prep.transformers_:
        if (isinstance(part, str) and part == "drop") or not len(columns):
            continue
        if name == "remainder":
            raise NotCompiled("the column transformer passes remaining columns through")
        blocks.append(_block(name, part, list(columns), design_rows))
    kernel, model, dtype = _kernel(estimator, np.hstack([b.design(design_rows) for b in blocks]))
    compiled = Compiled(blocks, kernel, model, dtype, {}, mapped, derive)
    diff = largest_difference(compiled, pipeline, rows)
    if not diff <= TOLERANCE:
        raise NotCompiled(f"the compiled form differs from the pipeline by {diff:.3g} on "
                          f"{len(rows)} held-out rows (tolerance {TOLERANCE:g})")  # fmt: skip
    compiled.report = {"kernel": kernel, "checked_rows": len(rows), "largest_difference": diff,
                       "tolerance": TOLERANCE}  # fmt: skip
    return compiled


def _steps(part) -> list:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    if isinstance(part, str):
        return [] if part == "passthrough" else [part]
    steps = [s for _, s in part.steps] if isinstance(part, Pipeline) else [part]
    # a fitted "passthrough" is a FunctionTransformer of no function
    passthrough = [isinstance(s, FunctionTransformer) and s.func is None is s.inverse_func
                   for s in steps]  # fmt: skip
    return [s for s, skip in zip(steps, passthrough, strict=True) if not skip]


def _block(name: str, part, columns: list[str], rows: pd.DataFrame):
    steps = _steps(part)
    encoder = next((s for s in reversed(steps) if hasattr(s, "categories_")), None)
    if encoder is not None:
        return _categorical(name, part, columns, encoder)
    return _numeric(name, steps, columns)


def _numeric(name: str, steps: list, columns: list[str]) -> NumericBlock:
    """Imputation, then standard scaling, each optional: (fill(x) - centre) / scale."""
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import StandardScaler

    n = len(columns)
    fill, centre, scale = np.full(n, np.nan), np.zeros(n), np.ones(n)
    kinds = [type(s) for s in steps]
    if kinds not in ([], [SimpleImputer], [StandardScaler], [SimpleImputer, StandardScaler]):
        raise NotCompiled(f"part {name!r}: {' then '.join(k.__name__ for k in kinds)} "
                          "has no compiled form")  # fmt: skip
    for step in steps:
        if isinstance(step, SimpleImputer):
            statistics = np.asarray(step.statistics_, dtype=np.float64)
            if step.add_indicator or len(statistics) != n or np.isnan(statistics).any():
                raise NotCompiled(f"part {name!r}: an imputer that adds or drops columns")
            if not (isinstance(step.missing_values, float) and np.isnan(step.missing_values)):
                raise NotCompiled(f"part {name!r}: an imputer of values other than NaN")
            fill = statistics
        else:
            centre = np.asarray(step.mean_, np.float64) if step.with_mean else centre
            scale = np.asarray(step.scale_, np.float64) if step.with_std else scale
    return NumericBlock(columns, fill, centre, scale)


def _categorical(name: str, part, columns: list[str], encoder) -> CategoricalBlock:
    """Each column's contribution, read off the fitted part: the output with that column set to
    each category (then unseen, then missing) minus the output of a base row."""
    if len(encoder.categories_) != len(columns):
        raise NotCompiled(f"part {name!r}: its encoder does not encode each column on its own")
    # NaN is scikit-learn's missing value; None is a category like any other (parquet's nulls)
    categories = [[c for c in cats if not _nan(c)] for cats in encoder.categories_]
    if any(not c for c in categories):
        raise NotCompiled(f"part {name!r}: a column with no known category")
    base_row = {c: cats[0] for c, cats in zip(columns, categories, strict=True)}
    try:
        base = _dense(part.transform(pd.DataFrame([base_row], dtype=object)))[0]
        tables = []
        for column, cats in zip(columns, categories, strict=True):
            probe = pd.DataFrame([base_row] * (len(cats) + 2), dtype=object)
            probe[column] = cats + [UNSEEN, np.nan]
            tables.append(_dense(part.transform(probe)) - base)
    except Exception as exc:  # noqa: BLE001 - e.g. an encoder that refuses unseen categories
        raise NotCompiled(f"part {name!r}: {type(exc).__name__}: {exc}") from None
    others = np.array([np.count_nonzero(np.nan_to_num(t, nan=1.0), axis=0) > 0 for t in tables])
    if (others.sum(axis=0) > 1).any():
        raise NotCompiled(f"part {name!r}: an output depends on more than one column")
    return CategoricalBlock(columns, categories, base, tables)


def _dense(m) -> np.ndarray:
    return m.toarray() if sparse.issparse(m) else np.asarray(m, dtype=np.float64)


def _plain(value):
    """A category as JSON holds it (numpy's scalars as Python's)."""
    return value.item() if isinstance(value, np.generic) else value


def _nan(value) -> bool:
    return isinstance(value, float) and value != value


def _kernel(estimator, x: np.ndarray) -> tuple[str, bytes, str]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.tree import BaseDecisionTree

    trees = getattr(estimator, "estimators_", None)
    if isinstance(estimator, HistGradientBoostingClassifier) or (
        trees is not None and isinstance(np.ravel(trees)[0], BaseDecisionTree)
    ):
        import treelite

        try:
            model = treelite.sklearn.import_model(estimator)
        except Exception as exc:  # noqa: BLE001 - an ensemble treelite cannot read
            raise NotCompiled(f"treelite: {type(exc).__name__}: {exc}") from None
        dtype = "float64" if isinstance(estimator, HistGradientBoostingClassifier) else "float32"
        return "treelite", bytes(model.serialize_bytes()), dtype
    from skl2onnx import to_onnx

    try:
        onx = to_onnx(estimator, x[:1], options={"zipmap": False}, target_opset=18)
    except Exception as exc:  # noqa: BLE001 - an estimator skl2onnx cannot convert
        raise NotCompiled(f"skl2onnx: {type(exc).__name__}: {exc}") from None
    return "onnxruntime", onx.SerializeToString(), "float64"
