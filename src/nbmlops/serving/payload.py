"""What a scoring request must hold, checked field by field before any model sees it.

The fields are the models' input columns (`features.json` of the build). Each is typed as in
training: a number (or null) for a numeric feature, a string (or null) for a categorical one.
Where the data contract has a column of the same name, its range and allowed values apply
too, and so does `max_missing: 0` (null refused) for a column of the contract's first (main)
table; columns of the other tables are joined in, and a join may leave them empty.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..spec import FeatureSpec

MAX_RECORDS = 1000


class InvalidRequest(Exception):
    """A request the service refuses, with one entry per problem (FastAPI's 422 shape)."""

    def __init__(self, problems: list[dict]):
        self.problems = problems
        super().__init__("; ".join(p["msg"] for p in problems))


@dataclass(frozen=True)
class Field:
    name: str
    numeric: bool
    nullable: bool = True
    low: float | None = None
    high: float | None = None
    allowed: frozenset[str] | None = None  # refused outside this set (contract `unknown: error`)


def _rule(name: str, numeric: bool, column: dict | None) -> Field:
    if not column:
        return Field(name, numeric)
    strict = column.get("unknown", "error") == "error"
    allowed = column.get("allowed")
    return Field(
        name,
        numeric,
        nullable=column.get("max_missing", 1) != 0,
        low=column.get("min") if numeric else None,
        high=column.get("max") if numeric else None,
        allowed=frozenset(map(str, allowed)) if allowed and strict and not numeric else None,
    )


class RequestContract:
    """The fields a request needs, from the feature spec and the data contract."""

    def __init__(self, spec: FeatureSpec, contract: dict | None = None,
                 max_text_chars: int = 1000, key: str | None = None):  # fmt: skip
        columns: dict[str, dict] = {}
        for i, table in enumerate((contract or {}).get("tables", {}).values()):
            for name, column in (table.get("columns") or {}).items():
                # The first table naming a column rules it. Columns of the other tables reach
                # the features through a join, which leaves them empty where nothing matched:
                # their `max_missing: 0` holds for the table, not for a request.
                rule = column if i == 0 else {k: v for k, v in column.items() if k != "max_missing"}
                columns.setdefault(name, rule)
        self.spec, self.max_text_chars = spec, max_text_chars
        self.fields = [_rule(n, True, columns.get(n)) for n in spec.numeric]
        self.fields += [_rule(n, False, columns.get(n)) for n in spec.categorical]
        # the model derives these from the fields: a value sent for one would be ignored
        self.derived = frozenset(spec.derived_columns)
        self.derived_by = spec.derived.get("file", "")
        # an online experiment's key (`serving.experiment.key`): required in every record and
        # never null, else its records would all draw one arm; a model's field, or one of its
        # own that the models never see (`key_values`)
        self.key = key
        self.key_field = None
        if key is not None:
            if key in self.derived:
                raise ConfigError(f"serving.experiment.key: {key!r} is derived by the model; "
                                  "name a field the request sends")  # fmt: skip
            found = next((f for f in self.fields if f.name == key), None)
            if found is not None and found.nullable:
                raise ConfigError(f"serving.experiment.key: the field {key!r} may be null in a "
                                  "request (the contract allows missing values); records "
                                  "without it would all draw one arm. Name a field that is "
                                  "never missing (max_missing: 0)")  # fmt: skip
            self.key_field = Field(key, False, nullable=False) if found is None else None

    def records(self, body: bytes) -> tuple[list[dict], bool]:
        """The request's records, checked and normalised, and whether it sent a list.

        InvalidRequest names each bad field.
        """
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidRequest(
                [_problem([], f"body is not JSON: {exc}", "json_invalid")]
            ) from exc
        except RecursionError as exc:
            raise InvalidRequest(
                [
                    _problem(
                        [],
                        "body is nested too deeply; a record is one object of field: value",
                        "json_invalid",
                    )
                ]
            ) from exc
        many = isinstance(data, list)
        items = data if many else [data]
        if not items:
            raise InvalidRequest([_problem([], "no records: send one object or a list", "empty")])
        if len(items) > MAX_RECORDS:
            raise InvalidRequest([_problem([], f"{len(items)} records; at most {MAX_RECORDS} "
                                               "per request", "too_long")])  # fmt: skip
        problems: list[dict] = []
        out = []
        for i, item in enumerate(items):
            where = [i] if many else []
            if not isinstance(item, dict):
                problems.append(_problem(where, "a record is a JSON object of field: value",
                                         "model_type"))  # fmt: skip
                continue
            out.append({f.name: self._value(f, item, where, problems) for f in self.fields})
            if self.key_field is not None:
                out[-1][self.key] = self._value(self.key_field, item, where, problems)
            for name in self.derived.intersection(item):
                problems.append(_problem([*where, name], f"field {name!r} is derived by the "
                                         f"model ({self.derived_by}) from the others; do not "
                                         "send it", "extra_forbidden"))  # fmt: skip
        if problems:
            raise InvalidRequest(problems)
        return out, many

    def _value(self, f: Field, item: dict, where: list, problems: list):
        loc = [*where, f.name]
        if f.name not in item:
            problems.append(_problem(loc, f"field {f.name!r} is required", "missing"))
            return None
        value = item[f.name]
        if value is None:
            if not f.nullable:
                problems.append(_problem(loc, f"field {f.name!r} may not be null", "null"))
            return None
        if f.numeric:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append(_problem(loc, f"field {f.name!r} must be a number, got "
                                              f"{value!r}", "float_type"))  # fmt: skip
                return None
            try:
                number = float(value)
            except OverflowError:
                problems.append(_problem(loc, f"field {f.name!r} is a number too large for a "
                                              f"float ({len(str(abs(value)))} digits)",
                                         "finite_number"))  # fmt: skip
                return None
            if not math.isfinite(number):
                problems.append(_problem(loc, f"field {f.name!r} must be finite, got {value}",
                                         "finite_number"))  # fmt: skip
                return None
            if (f.low is not None and number < f.low) or (f.high is not None and number > f.high):
                problems.append(_problem(loc, f"field {f.name!r} is {value}, outside the "
                                              f"contract's range {f.low} to {f.high}",
                                         "range"))  # fmt: skip
            return number
        if isinstance(value, (dict, list, bool)):
            problems.append(_problem(loc, f"field {f.name!r} must be a string, got {value!r}",
                                     "string_type"))  # fmt: skip
            return None
        text = str(value)
        if len(text) > self.max_text_chars:
            problems.append(_problem(loc, f"field {f.name!r} has {len(text):,} characters; at "
                                          f"most {self.max_text_chars:,}",
                                     "string_too_long"))  # fmt: skip
            return None
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # JSON may escape half of a surrogate pair; no text has one
            problems.append(_problem(loc, f"field {f.name!r} is not valid Unicode text (it "
                                          "holds a lone surrogate)", "string_unicode"))  # fmt: skip
            return None
        if f.allowed is not None and text not in f.allowed:
            problems.append(_problem(loc, f"field {f.name!r} is {text!r}, not one of the "
                                          f"contract's values {sorted(f.allowed)}",
                                     "enum"))  # fmt: skip
        return text

    def key_values(self, records: list[dict]) -> list | None:
        """The experiment key's values, taken out of the records when the key is not one of
        the models' fields (None when it is, or there is no key)."""
        if self.key_field is None:
            return None
        return [r.pop(self.key) for r in records]

    def frame(self, records: list[dict]) -> pd.DataFrame:
        """Checked records as the frame the models take (numeric as float64, categories as str)."""
        return pd.DataFrame({
            f.name: np.array([r[f.name] for r in records], dtype=float if f.numeric else object)
            for f in self.fields
        })  # fmt: skip

    def example(self, frame: pd.DataFrame, n: int = 1) -> list[dict]:
        """The first `n` rows of a frame as request records (NaN as null)."""
        rows = frame[[f.name for f in self.fields]].head(n).astype(object)
        return rows.where(rows.notna(), None).to_dict(orient="records")


def _problem(loc: list, msg: str, kind: str) -> dict:
    return {"loc": ["body", *loc], "msg": msg, "type": kind}
