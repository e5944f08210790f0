"""Derived features the user owns: a function in a file of the project (the env's `features`
block, e.g. `features/flights.py`, function `derive`) that computes the model's columns from
the input columns of each row.

The function takes a data frame of input rows and returns the columns the estimator sees, one
row per input row (joins of other tables belong in ingest). It runs as the first step of every
fitted pipeline (`Derive`), so the score task and the service compute it from the raw
columns and a request never carries a derived one. The step keeps the function's source, not a
reference to the file: a registered model scores with the code it was trained with, whatever
the file says later.
"""

from __future__ import annotations

import hashlib
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from .errors import ConfigError, DataError, Problem


@dataclass(frozen=True)
class Source:
    """The derivation's file (as the env names it), its function and its code."""

    file: str
    function: str
    code: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.code.encode()).hexdigest()

    @classmethod
    def read(cls, file: str | None, function: str | None, root: str | Path = ".",
             where: str = "env file") -> Source:  # fmt: skip
        """The env's `features.file`, read; a clear line when it is missing or unreadable.
        The file is kept by its path relative to `root` (the project) where it lies within."""
        function = function or "derive"
        if not file:
            raise ConfigError(f"{where}: features.file is not set: name the file of your derived "
                              "features (`nbmlops init` writes one that derives none)")  # fmt: skip
        path = Path(root) / str(file)
        if not path.is_file():
            raise ConfigError(f"{where}: features.file {str(file)!r} not found")
        try:
            shown = str(path.resolve().relative_to(Path(root).resolve()))
        except ValueError:
            shown = str(path)
        return cls(shown, str(function), path.read_text(encoding="utf-8"))

    def load(self):
        """The function, from the code as it is kept (not from the file on disk)."""
        module = types.ModuleType(f"nbmlops_derived_{self.sha256[:12]}")
        module.__file__ = self.file
        try:
            exec(compile(self.code, self.file, "exec"), module.__dict__)  # noqa: S102
        except Exception as exc:  # noqa: BLE001 - any error in the user's file, said as one line
            raise ConfigError(f"{self.file}: {type(exc).__name__}: {exc}") from None
        found = getattr(module, self.function, None)
        if not callable(found):
            raise ConfigError(f"{self.file}: no function {self.function!r} (features.function)")
        return found


def as_inputs(rows: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """The input columns typed as training saw them: numbers as float64, categories as text
    (None where missing), whatever a request or a file held. Built as one frame of arrays: the
    service calls it for every request, where a column at a time costs milliseconds."""
    data = {}
    for col in numeric:
        values = rows[col]
        if values.dtype.kind not in "fiub":  # text or None among numbers
            values = pd.to_numeric(values)
        data[col] = values.to_numpy(dtype="float64", na_value=np.nan)
    for col in categorical:
        data[col] = _text(rows[col])
    return pd.DataFrame(data, index=rows.index)


def _text(values: pd.Series) -> np.ndarray:
    """Values as text (None where missing)."""
    missing = pd.isna(values).to_numpy()
    return np.array([None if gone else v if isinstance(v, str) else str(v)
                     for v, gone in zip(values.to_numpy(dtype=object), missing, strict=True)],
                    dtype=object)  # fmt: skip


class Derive(BaseEstimator, TransformerMixin):
    """The first step of a pipeline: the user's function on the input columns, its output
    typed (numbers as float64, the rest as text) and in the order the model was fitted on."""

    def __init__(self, source: Source | None = None, inputs: tuple = ((), ()),
                 outputs: tuple = ((), ())):  # fmt: skip
        self.source, self.inputs, self.outputs = source, inputs, outputs

    def fit(self, X, y=None):
        return self

    def _function(self):
        if getattr(self, "_fn", None) is None:
            self._fn = self.source.load()
        return self._fn

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        return self._derived(as_inputs(X, *map(list, self.inputs)))

    def transform_records(self, records: list[dict]) -> pd.DataFrame:
        """`transform` of request records as the request contract leaves them (numbers or
        None, text or None), made into the typed frame directly: what the service scores."""
        numeric, categorical = map(list, self.inputs)
        data = {c: np.array([np.nan if r[c] is None else r[c] for r in records], dtype="float64")
                for c in numeric}  # fmt: skip
        data |= {c: np.array([r[c] for r in records], dtype=object) for c in categorical}
        return self._derived(pd.DataFrame(data))

    def _derived(self, rows: pd.DataFrame) -> pd.DataFrame:
        numeric, categorical = map(list, self.outputs)
        out = run(self._function(), rows, self.source)
        missing = [c for c in numeric + categorical if c not in out.columns]
        if missing:
            raise ValueError(f"{self.source.file}: {self.source.function} no longer returns "
                             f"{missing}")  # fmt: skip
        return as_inputs(out, numeric, categorical)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.array([*self.outputs[0], *self.outputs[1]], dtype=object)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_fn"}


def run(function, rows: pd.DataFrame, source: Source) -> pd.DataFrame:
    """The function's output on `rows`, checked to be one row per input row, in order."""
    where = source.function
    try:
        out = function(rows.copy())
    except Exception as exc:  # noqa: BLE001 - the user's code: its error, said as one line
        raise DataError(Problem(source.file, None, f"{source.function} raised "
                                f"{type(exc).__name__}: {exc}", "it receives the input columns "
                                f"{list(rows.columns)}")) from None  # fmt: skip
    if not isinstance(out, pd.DataFrame):
        raise DataError(Problem(source.file, None, f"{source.function} returned a "
                                f"{type(out).__name__}, not a data frame"))  # fmt: skip
    if len(out) != len(rows) or not out.index.equals(rows.index):
        said = f"{where} returned {len(out)} rows for {len(rows)}, or in another order"
        hint = "derive from each row's own columns; joins belong in ingest"
        raise DataError(Problem(source.file, None, said, hint))
    return out


#: The names a derived column may not take: they are the data part's own.
RESERVED_PREFIX = "_"


def describe(source: Source, rows: pd.DataFrame, numeric: list[str], categorical: list[str],
             target: str) -> tuple[list[str], list[str]]:  # fmt: skip
    """The model's numeric and categorical columns: the function's output on `rows` (the
    training window's input columns), each kind read from its values.

    Refused with one line each: no column, the target or a reserved name among them, a column
    that has an input's name but other values (derive under a new name), a column with no
    value at all.
    """
    out = run(source.load(), as_inputs(rows, numeric, categorical), source)
    where = f"{source.function}"
    problems = []
    if out.columns.empty:
        problems.append(Problem(source.file, None, f"{where} returned no column",
                                "return at least the input columns (`return rows`)"))  # fmt: skip
    for col in out.columns:
        name = str(col)
        if name == target or name.startswith(RESERVED_PREFIX):
            problems.append(Problem(source.file, name, f"{where} returns {name!r}: the target "
                                    "and names starting with '_' are not features"))  # fmt: skip
        elif name in rows.columns and not _same(out[col], rows[col]):
            problems.append(Problem(source.file, name, f"{where} changes the input column "
                                    f"{name!r}", "give the derived values a new name"))  # fmt: skip
        elif out[col].isna().all() and len(out):
            problems.append(Problem(source.file, name, f"{where} returns {name!r} with no "
                                    "value on any training row"))  # fmt: skip
    if problems:
        raise DataError(problems)
    kinds = {str(c): pd.api.types.is_numeric_dtype(out[c]) or pd.api.types.is_bool_dtype(out[c])
             for c in out.columns}  # fmt: skip
    return [c for c, num in kinds.items() if num], [c for c, num in kinds.items() if not num]


def _same(a: pd.Series, b: pd.Series) -> bool:
    both = a.isna() & b.isna()
    return bool(((a == b) | both).all())


def split_off(model) -> tuple[Derive | None, list]:
    """A pipeline's derivation step (None without one) and its other steps ([] for a model
    that is no pipeline)."""
    steps = list(getattr(model, "steps", []))
    if steps and isinstance(steps[0][1], Derive):
        return steps[0][1], steps[1:]
    return None, steps


def step(spec) -> Derive:
    """The `Derive` step of a feature spec that has a derivation."""
    d = spec.derived
    source = Source(d["file"], d["function"], d["code"])
    return Derive(source, (tuple(spec.numeric), tuple(spec.categorical)),
                  (tuple(d["numeric"]), tuple(d["categorical"])))  # fmt: skip


def with_derived(frame: pd.DataFrame, spec) -> pd.DataFrame:
    """`frame` (holding the input columns) with the derived columns beside them, as a window
    of the build holds them: what monitoring compares."""
    if not spec.derived_columns:
        return frame
    made = step(spec).transform(frame[spec.columns]) if len(frame) else None
    out = frame.copy()
    for col in spec.derived_columns:
        out[col] = made[col] if made is not None else pd.Series(dtype=object)
    return out


def feature_table(spec, window: pd.DataFrame) -> pd.DataFrame:
    """One row per column the model sees: its kind, whether it is an input or derived, and
    its share of missing values in `window` (a window of the build, which holds both)."""
    rows = []
    for kind, columns in (("numeric", spec.model_numeric), ("categorical", spec.model_categorical)):
        for col in columns:
            missing = float(window[col].isna().mean()) if len(window) else float("nan")
            rows.append({"feature": col, "kind": kind,
                         "source": "input" if col in spec.columns else "derived",
                         "missing_share": round(missing, 4)})  # fmt: skip
    return pd.DataFrame(rows)


def sample_rows(spec, window: pd.DataFrame, rows: int = 5, seed: int = 0) -> pd.DataFrame:
    """A few rows of `window`: the input columns the derivation reads, then what it derived."""
    picked = window.sample(min(rows, len(window)), random_state=seed) if len(window) else window
    return picked[spec.stored_columns].reset_index(drop=True)
