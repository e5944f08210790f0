"""The data contract: schema, types, ranges, missing values and allowed categories.

A contract is a YAML file with one entry per raw table::

    tables:
      flights:
        min_rows: 1000
        columns:
          origin: {type: category, allowed: [EWR, JFK, LGA]}
          sched_dep_time: {type: integer, min: 0, max: 2359, max_missing: 0}

Column keys: type (integer, number, string, category, datetime), required (default true),
min, max, max_missing (a fraction, default 1), allowed (a list) with unknown: error|warn.
Every table also gets the checks no contract needs: no column entirely empty, no infinite
numbers, no duplicate column names.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..errors import ConfigError, DataError, Problem
from .dataset import numbers_in, parse_times, positive_label_in

TYPES = ("integer", "number", "string", "category", "datetime")
COLUMN_KEYS = {"type", "required", "min", "max", "max_missing", "allowed", "unknown"}
EXAMPLES = 3
#: The columns of the per-column summary, in the order the data-quality page shows them.
SUMMARY = ["file", "column", "type", "missing", "unique", "min", "max", "most common", "status"]


@dataclass
class CheckResult:
    """Everything the checks found: errors stop the build, warnings are reported."""

    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    columns: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_if_failed(self) -> None:
        if self.errors:
            raise DataError(self.errors)

    def summary(self) -> pd.DataFrame:
        return pd.DataFrame(self.columns, columns=SUMMARY)

    def merge(self, other: CheckResult) -> None:
        self.errors += other.errors
        self.warnings += other.warnings
        self.columns += other.columns

    def to_dict(self) -> dict:
        return {
            "errors": [asdict(p) for p in self.errors],
            "warnings": [asdict(p) for p in self.warnings],
            "columns": self.columns,
        }

    @classmethod
    def from_dict(cls, data: dict) -> CheckResult:
        return cls([Problem(**p) for p in data["errors"]],
                   [Problem(**p) for p in data["warnings"]], list(data["columns"]))  # fmt: skip


def load_contract(path: str | Path | None) -> dict:
    """Read and check a contract file; None gives the empty contract."""
    if path is None:
        return {"tables": {}}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: contract file not found (set `contract` in the env file)")
    spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    tables = spec.get("tables")
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: a contract needs a `tables:` mapping")
    for tname, tspec in tables.items():
        for cname, cspec in (tspec or {}).get("columns", {}).items():
            unknown = set(cspec or {}) - COLUMN_KEYS
            if unknown:
                raise ConfigError(
                    f"{path}: table {tname!r}, column {cname!r}: unknown keys {sorted(unknown)}; "
                    f"allowed: {sorted(COLUMN_KEYS)}"
                )
            if (cspec or {}).get("type", "string") not in TYPES:
                raise ConfigError(
                    f"{path}: table {tname!r}, column {cname!r}: type must be one of {TYPES}"
                )
    return spec


def check_table(df: pd.DataFrame, file: str, spec: dict | None) -> CheckResult:
    """Check one table against its contract entry (or only the generic checks when None)."""
    spec = spec or {}
    result = CheckResult()
    min_rows = spec.get("min_rows", 1)
    if len(df) < min_rows:
        result.errors.append(
            Problem(file, None, f"has {len(df)} rows; the contract needs {min_rows}")
        )
    dupes = df.columns[df.columns.duplicated()].unique().tolist()
    for name in dupes:
        result.errors.append(Problem(file, str(name), "column name appears more than once"))
    columns = spec.get("columns", {}) or {}
    for name, cspec in columns.items():
        if name not in df.columns and (cspec or {}).get("required", True):
            result.errors.append(
                Problem(file, name, "required column is missing", f"found: {_names(df)}")
            )
    for name in dict.fromkeys(df.columns):
        series = df[name]
        if isinstance(series, pd.DataFrame):  # duplicate name, already reported
            continue
        result.merge(check_column(series, file, str(name), columns.get(name)))
    return result


def check_column(series: pd.Series, file: str, name: str, spec: dict | None) -> CheckResult:
    """Type, range, missing values and allowed categories of one column."""
    spec = spec or {}
    result = CheckResult()
    kind = spec.get("type")
    missing = float(series.isna().mean()) if len(series) else 0.0
    status = []

    def error(problem: str, hint: str = "") -> None:
        result.errors.append(Problem(file, name, problem, hint))
        status.append(problem)

    def warn(problem: str) -> None:
        result.warnings.append(Problem(file, name, problem))
        status.append(problem)

    if len(series) and missing == 1.0 and (spec.get("max_missing") or 0) < 1:
        error("every value is missing")  # unless the contract allows an empty column
    max_missing = spec.get("max_missing")
    if max_missing is not None and missing > max_missing:
        error(f"{missing:.1%} missing values; the contract allows {max_missing:.1%}")

    values = series
    if kind in ("integer", "number"):
        values = numbers_in(series)
        bad = series[values.isna() & series.notna()]
        if len(bad):
            error(f"expected numbers, found text in {len(bad)} rows, e.g. {_examples(bad)}")
        elif kind == "integer":
            fractional = values.dropna() % 1 != 0
            if fractional.any():
                error(f"expected whole numbers, e.g. {_examples(values.dropna()[fractional])}")
    elif kind == "datetime":
        values = parse_times(series)  # the rule the dataset uses: offsets converted to UTC
        bad = series[values.isna() & series.notna()]
        if len(bad):
            error(f"cannot parse {len(bad)} values as dates, e.g. {_examples(bad)}")

    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric:
        infinite = np.isinf(values.to_numpy(dtype="float64", na_value=np.nan))
        if infinite.any():
            error(f"{int(infinite.sum())} infinite values", "replace them or leave the cell empty")
        finite = values[~infinite]
        low, high = spec.get("min", -np.inf), spec.get("max", np.inf)
        for bound, outside, word in ((low, finite < low, "below"), (high, finite > high, "above")):
            if outside.any():
                error(
                    f"{int(outside.sum())} values {word} {bound}, e.g. {_examples(finite[outside])}"
                )

    allowed = spec.get("allowed")
    if allowed is not None:
        present = series.dropna()
        unknown = present[~present.astype(str).isin([str(a) for a in allowed])]
        if len(unknown):
            text = f"{len(unknown)} values outside the allowed set, e.g. {_examples(unknown)}"
            if spec.get("unknown", "error") == "warn":
                warn(text)
            else:
                error(text, f"allowed: {', '.join(map(str, allowed))}")

    result.columns.append(
        {
            "file": Path(file).name,
            "column": name,
            "type": kind or str(series.dtype),
            "missing": round(missing, 4),
            "unique": int(series.nunique(dropna=True)),
            "min": _stat(values, "min") if numeric else None,
            "max": _stat(values, "max") if numeric else None,
            "most common": None
            if numeric
            else " | ".join(str(v)[:60] for v in series.value_counts().head(3).index),
            "status": "; ".join(status) if status else "ok",
        }
    )
    return result


def check_target(df: pd.DataFrame, file: str, target: str, positive_label=None) -> CheckResult:
    """The target must exist and hold two classes (or a named positive label and others)."""
    result = CheckResult()
    if target not in df.columns:
        result.errors.append(
            Problem(file, target, "target column is missing", f"found: {_names(df)}; set `target`")
        )
        return result
    labels = df[target].dropna().unique().tolist()
    if not labels:
        result.errors.append(
            Problem(file, target, "every value is missing: no row is labelled",
                    "a classifier learns from labelled rows; is it the right column?")
        )  # fmt: skip
    elif len(labels) < 2:
        result.errors.append(
            Problem(
                file,
                target,
                f"target has one class only ({_examples(pd.Series(labels))})",
                "a classifier needs examples of both outcomes",
            )
        )
    elif positive_label is None and len(labels) > 2:
        result.errors.append(
            Problem(
                file,
                target,
                f"target has {len(labels)} labels, e.g. {_examples(pd.Series(labels))}",
                "set `positive_label` to the label that means a positive outcome",
            )
        )
    elif positive_label is not None:
        named = positive_label_in(labels, positive_label)
        yaml_word = isinstance(positive_label, bool)
        if str(named) not in map(str, labels):
            hint = f"labels found: {_examples(pd.Series(labels))}"
            if yaml_word:
                hint += "; YAML reads unquoted yes/no/on/off as booleans: quote the label"
            result.errors.append(
                Problem(file, target, f"positive_label {positive_label!r} does not occur", hint)
            )
        elif named is not positive_label:
            result.warnings.append(
                Problem(file, target, f"positive_label {positive_label!r} (YAML's reading of an "
                        f"unquoted word) taken as the label {named!r}",
                        f'write it quoted: positive_label: "{named}"')
            )  # fmt: skip
    return result


#: How far an inferred range reaches beyond the values seen, as a share of their span.
RANGE_MARGIN = 0.1


@dataclass
class Inferred:
    """A contract entry inferred from one table, and what it noticed about columns."""

    table: dict
    notes: dict[str, str] = field(default_factory=dict)  # column -> why it is flagged
    ids: list[str] = field(default_factory=list)  # columns that look like row identifiers
    empty: list[str] = field(default_factory=list)  # columns with no value on any row


#: A column name that says "identifier": customer_id, order no, account-number, CustomerID.
ID_NAME = re.compile(r"(?:^|[_\s.-])(?:[iI][dD]|key|uuid|no|nr|number)$|[a-z](?:Id|ID)$")


def infer_table(df: pd.DataFrame, *, time_column: str | None, target: str,
                max_categories: int) -> Inferred:  # fmt: skip
    """What a table's columns hold, as a contract entry: types, ranges widened by
    `RANGE_MARGIN` (never below 0 for a column without negatives), allowed categories (new
    ones warn), the largest missing share with room, and at least half of today's rows."""
    columns, notes, ids, empty = {}, {}, [], []
    for name in df.columns:
        series = df[name]
        present = series.dropna()
        share = float(series.isna().mean())
        entry = {}
        distinct = int(present.nunique())
        if name == time_column:
            entry["type"] = "datetime"
        elif pd.api.types.is_bool_dtype(series):
            entry |= {"type": "category", "allowed": [bool(v) for v in sorted(present.unique())]}
        elif pd.api.types.is_numeric_dtype(series):
            whole = bool(len(present)) and bool((present % 1 == 0).all())
            entry["type"] = "integer" if whole else "number"
            if len(present):
                low, high = float(present.min()), float(present.max())
                pad = (high - low) * RANGE_MARGIN or abs(high) * RANGE_MARGIN or 1.0
                low, high = low - pad, high + pad
                if float(present.min()) >= 0:
                    low = max(low, 0.0)
                entry["min"], entry["max"] = (
                    (int(np.floor(low)), int(np.ceil(high))) if whole else
                    (float(f"{low:.6g}"), float(f"{high:.6g}")))  # fmt: skip
            in_order, named = present.is_monotonic_increasing, bool(ID_NAME.search(str(name)))
            if whole and distinct == len(series) > 1 and (in_order or named):
                ids.append(name)
                how = "in order" if in_order else "and named like one"
                notes[name] = f"a different whole number on every row, {how}: a row identifier"
                entry.pop("min", None), entry.pop("max", None)  # new rows bring new numbers
        elif distinct <= max_categories and distinct < len(series):
            entry |= {"type": "category", "allowed": sorted(map(str, present.unique())),
                      "unknown": "warn" if name != target else "error"}  # fmt: skip
        else:
            entry["type"] = "string"
            if distinct == len(series) > 1:
                ids.append(name)
                notes[name] = "a different value on every row: a row identifier"
        if len(series) and not distinct and name != target:
            notes[name] = "no value on any row: not a feature"
            empty.append(name)
            entry["max_missing"] = 1.0  # init leaves it out; the build reads it as empty
        elif len(series) and distinct == 1 and name != target:
            notes[name] = f"constant ({present.iloc[0]!r} or missing): not a feature"
        if share == 0:
            entry["max_missing"] = 0 if name == target else 0.01  # one empty cell is no alarm
        elif share < 1:
            entry["max_missing"] = round(min(1.0, share * 1.5 + 0.01), 3)
        columns[str(name)] = entry
    return Inferred({"min_rows": max(1, len(df) // 2), "columns": columns}, notes, ids, empty)


def contract_yaml(tables: dict[str, Inferred], header: str) -> str:
    """A contract file: `header` as comments, then each table with its notes beside columns."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()] + ["tables:"]
    for name, inferred in tables.items():
        lines += [f"  {_yaml_key(name)}:", f"    min_rows: {inferred.table['min_rows']}",
                  "    columns:"]  # fmt: skip
        for column, entry in inferred.table["columns"].items():
            flow = yaml.safe_dump(
                entry, default_flow_style=True, sort_keys=False, width=10**6, allow_unicode=True
            )
            note = inferred.notes.get(column)
            lines.append(
                f"      {_yaml_key(column)}: {flow.strip()}" + (f"  # {note}" if note else "")
            )
    return "\n".join(lines) + "\n"


def _yaml_key(name: str) -> str:
    return yaml.safe_dump(name, width=10**6, allow_unicode=True).split("\n")[0] if name else '""'


def quality_page_body(result: CheckResult, manifest: dict):
    """HTML body of the data-quality summary: verdict, problems, then one row per column."""
    from .. import html

    verdict = "PASS" if result.ok else "FAIL"
    parts = [
        html.cards(
            {
                "verdict": verdict,
                "tables": len(manifest["tables"]),
                "rows": sum(t["rows"] for t in manifest["tables"].values()),
                "errors": len(result.errors),
                "warnings": len(result.warnings),
            }
        ),
        html.para(f"Snapshot {manifest['snapshot']} (sha256 {manifest['sha256'][:16]}…)"),
    ]
    if result.errors or result.warnings:
        problems = pd.DataFrame(
            [{"severity": "error", "problem": str(p)} for p in result.errors]
            + [{"severity": "warning", "problem": str(p)} for p in result.warnings]
        )
        parts += [
            html.heading("Problems"),
            html.table(problems, {"error": "fail", "warning": "warn"}),
        ]
    read = pd.DataFrame([
        {"file": Path(meta["origin"]).name, "format": how.get("format", ""),
         "encoding": how.get("encoding", ""), "delimiter": repr(how.get("delimiter", "")),
         "read as missing": ", ".join(map(repr, how.get("missing_values", [])))}
        for meta in manifest["tables"].values() if (how := meta.get("read_as"))
    ])  # fmt: skip
    if len(read):
        parts += [
            html.heading("How the files were read"),
            html.para("Cells holding exactly one of these values (`data.missing_values` in "
                      "the env file) count as missing below; any other text in a numeric "
                      "column stops the build."),
            html.table(read),
        ]  # fmt: skip
    parts += [html.heading("Columns"), html.table(result.summary(), {"ok": "pass"})]
    return "".join(parts)


def _names(df: pd.DataFrame) -> str:
    names = [str(c) for c in df.columns]
    return ", ".join(names[:12]) + (" …" if len(names) > 12 else "")


def _examples(values: pd.Series) -> str:
    return ", ".join(repr(v) for v in pd.Series(values).drop_duplicates().head(EXAMPLES).tolist())


def _stat(values: pd.Series, how: str):
    finite = values.replace([np.inf, -np.inf], np.nan).dropna()
    if finite.empty:
        return None
    return float(getattr(finite, how)())


def validate_snapshot(
    manifest: dict,
    tables: dict[str, pd.DataFrame],
    contract: dict,
    target: str,
    positive_label=None,
) -> CheckResult:
    """Every table of a snapshot against the contract; a file source's target is checked too."""
    from .sources import NYCFLIGHTS13

    unknown = sorted(set(contract["tables"]) - set(tables))
    if unknown:
        raise ConfigError(
            f"the contract describes tables {unknown} that the source {manifest['source']!r} "
            f"does not have ({sorted(tables)}); point `contract` at the right file"
        )
    result = CheckResult()
    for name, df in tables.items():
        origin = manifest["tables"][name]["origin"]
        result.merge(check_table(df, origin, contract["tables"].get(name)))
    if manifest["kind"] != NYCFLIGHTS13:
        result.merge(
            check_target(
                tables["data"], manifest["tables"]["data"]["origin"], target, positive_label
            )
        )
    return result
