"""The dataset: the raw tables joined, the rows labelled and given their period; the checks of
a table's values (numbers, times, the target's labels). `split` cuts it into windows."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..errors import DataError, Problem
from ..settings import DataSettings
from ..spec import TIME, FeatureSpec
from .sources import NYCFLIGHTS13

#: A flight's input columns: its own, the origin's weather at the scheduled hour, its plane's.
#: The features the model sees (hours, day of week, plane age) are derived from them by the
#: project's own file (`features/flights.py`), not here.
FLIGHT_NUMERIC = [
    "year",
    "month",
    "day",
    "sched_dep_time",
    "sched_arr_time",
    "distance",
    "temp",
    "dewp",
    "humid",
    "wind_speed",
    "wind_gust",
    "precip",
    "pressure",
    "visib",
    "plane_year",
    "seats",
    "engines",
]
FLIGHT_CATEGORICAL = ["carrier", "origin", "dest"]


def build_dataset(
    tables: dict[str, pd.DataFrame], manifest: dict, s: DataSettings
) -> tuple[pd.DataFrame, FeatureSpec]:
    """The labelled dataset (features, 0/1 target, `_time`) for the manifest's kind of source."""
    if manifest["kind"] == NYCFLIGHTS13:
        return flights_dataset(tables, s)
    return table_dataset(tables["data"], manifest["tables"]["data"]["origin"], s)


def flights_dataset(tables: dict[str, pd.DataFrame], s: DataSettings):
    """Scheduled flights with origin weather at the scheduled hour and plane facts.

    Nothing known only after departure is a feature. Flights with no arrival delay
    (cancelled or diverted) are counted and excluded, or labelled late if
    `cancelled_as_late` is set.
    """
    flights = tables["flights"]
    weather = tables["weather"].drop_duplicates(["origin", "time_hour"])
    planes = tables["planes"].rename(columns={"year": "plane_year"})
    df = flights.merge(
        weather.drop(columns=["year", "month", "day", "hour"]),
        on=["origin", "time_hour"],
        how="left",
    ).merge(planes[["tailnum", "plane_year", "seats", "engines"]], on="tailnum", how="left")
    df[TIME] = pd.to_datetime(
        dict(year=df.year, month=df.month, day=df.day, hour=df.hour, minute=df.minute)
    )
    cancelled = df["dep_time"].isna()
    diverted = df["dep_time"].notna() & df["arr_delay"].isna()
    counts = {
        "flights": len(df),
        "cancelled": int(cancelled.sum()),
        "diverted": int(diverted.sum()),
        "without_weather": int(df["temp"].isna().sum()),
        "without_plane": int(df["plane_year"].isna().sum()),
    }
    unlabelled = cancelled | diverted
    if s.cancelled_as_late:
        df[s.target] = ((df["arr_delay"] >= 15) | unlabelled).astype("int8")
        counts["labelled_late_because_cancelled_or_diverted"] = int(unlabelled.sum())
    else:
        df = df[~unlabelled].copy()
        df[s.target] = (df["arr_delay"] >= 15).astype("int8")
        counts["excluded_cancelled_or_diverted"] = int(unlabelled.sum())
    spec = FeatureSpec(s.target, list(FLIGHT_NUMERIC), list(FLIGHT_CATEGORICAL), counts)
    return _finish(df[spec.columns + [s.target, TIME]], spec, s)


def table_dataset(df: pd.DataFrame, file: str, s: DataSettings):
    """Any flat table: every column but target, time and `drop_columns` is a feature."""
    if s.target not in df.columns:
        raise DataError(Problem(file, s.target, "target column is missing", "set `target`"))
    df = df.copy()
    labels = df[s.target]
    if labels.isna().any():
        missing = int(labels.isna().sum())
        raise DataError(Problem(
            file, s.target, f"{missing} of {len(labels)} rows have no target value",
            "rows whose labels have not come yet belong in a batch file of `current_batches`, "
            "monitored until their labels come; remove them from this table",
        ))  # fmt: skip
    df[s.target] = encode_target(labels, s.positive_label, file, s.target)
    if s.time_column:
        if s.time_column not in df.columns:
            raise DataError(
                Problem(file, s.time_column, "time column is missing", "set `time_column`")
            )
        parsed = parse_times(df[s.time_column])
        _check_times(df[s.time_column], parsed, file, s.time_column)
        df[TIME] = parsed
    else:
        df[TIME] = pd.NaT
    numeric, categorical, dropped = [], [], {}
    skip = {s.target, s.time_column, TIME, *s.drop_columns}
    for col in df.columns:
        if col in skip:
            continue
        values = df[col]
        if values.nunique(dropna=False) <= 1:  # no information, and no drift to find
            dropped[col] = f"constant: every row is {values.iloc[:1].tolist()[0]!r}"
        elif pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            numeric.append(col)
        elif _mostly_numbers(values):
            raise DataError(
                Problem(file, col, f"numeric column holds text in {text_cells(values)}",
                        "fix those cells, or list the column in `drop_columns`")
            )  # fmt: skip
        elif values.nunique() <= s.max_categories:
            categorical.append(col)
        else:
            dropped[col] = f"{values.nunique()} distinct values (more than max_categories)"
    if not numeric and not categorical:
        raise DataError(Problem(file, None, "no feature columns left after target and time"))
    spec = FeatureSpec(s.target, numeric, categorical, {"rows": len(df)}, dropped)
    return _finish(df[spec.columns + [s.target, TIME]], spec, s)


def _check_times(values: pd.Series, parsed: pd.Series, file: str, column: str) -> None:
    """A DataError naming the empty cells and the values that are not dates, by file line."""
    hint = "fix or remove those rows, or split by row order without a time column"
    empty, unparsed = values.isna(), parsed.isna() & values.notna()
    problems = []
    if unparsed.any():
        examples = ", ".join(map(repr, values[unparsed].unique()[:3]))
        problems.append(Problem(file, column, f"{int(unparsed.sum())} values are not dates, "
                                f"e.g. {examples} ({_lines(unparsed)})", hint))  # fmt: skip
    if empty.any():
        problems.append(Problem(file, column, f"{int(empty.sum())} rows have no time "
                                f"({_lines(empty)})", hint))  # fmt: skip
    if problems:
        raise DataError(problems)


def _lines(mask: pd.Series) -> str:
    """Where the rows of `mask` stand in a file with a header: "lines 4, 9 and 2 more"."""
    lines = [str(int(i) + 2) for i in mask.index[mask.to_numpy()][:3]]
    more = int(mask.sum()) - len(lines)
    return f"line{'s' if mask.sum() > 1 else ''} {', '.join(lines)}" + (
        f" and {more:,} more" if more else "")  # fmt: skip


def numbers_in(values: pd.Series) -> pd.Series:
    """`values` as float numbers, NaN where a value is missing or is not a number.

    Text is parsed once per distinct value: a column of a million cells holding a few
    categories costs a few parses, not a million.
    """
    if values.dtype != object:
        return pd.to_numeric(values, errors="coerce")
    codes, distinct = pd.factorize(values)  # missing values get code -1
    parsed = pd.to_numeric(pd.Series(distinct, dtype=object), errors="coerce")
    table = np.append(parsed.to_numpy(dtype="float64"), np.nan)  # code -1 reads the NaN
    return pd.Series(table[codes], index=values.index)


def text_cells(values: pd.Series) -> str:
    """How many cells of a numeric column are text, with examples: "3 rows, e.g. 'n/a'"."""
    bad = values[numbers_in(values).isna() & values.notna()]
    return f"{len(bad)} rows, e.g. {', '.join(map(repr, bad.unique()[:3]))}" if len(bad) else ""


def _mostly_numbers(values: pd.Series, share: float = 0.95) -> bool:
    """Text values of which nearly all parse as numbers: a numeric column with stray text."""
    present = values.dropna()
    if present.empty:
        return False
    parsed = numbers_in(present).notna().mean()
    return share <= parsed < 1.0


#: How YAML spells a boolean: an unquoted `positive_label: yes` arrives as True.
YAML_BOOLEANS = {True: ("yes", "y", "true", "on"), False: ("no", "n", "false", "off")}


def positive_label_in(labels: list, positive_label):
    """The label `positive_label` names: for a YAML boolean that is not itself a label, the
    one label spelled like it (`yes` for True); otherwise `positive_label` as it is."""
    if isinstance(positive_label, bool) and str(positive_label) not in map(str, labels):
        spelled = [x for x in labels if str(x).lower() in YAML_BOOLEANS[positive_label]]
        if len(spelled) == 1:
            return spelled[0]
    return positive_label


def parse_times(values: pd.Series) -> pd.Series:
    """Dates and times as naive UTC timestamps; NaT where a value is not a date.

    The one rule: a timestamp with an offset (`-08:00`, `Z`) is converted to UTC, and one
    without an offset is taken as UTC already, so one column may mix offsets (daylight saving).
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values, utc=True)
    else:
        parsed = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
        if parsed.notna().sum() < values.notna().sum():  # not ISO 8601: let pandas infer
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                parsed = pd.to_datetime(values, errors="coerce", utc=True)
    return parsed.dt.tz_convert(None)


def encode_target(labels: pd.Series, positive_label, file: str, column: str) -> pd.Series:
    """0/1 target: the positive label (or the larger of two labels) becomes 1."""
    values = labels.unique().tolist()
    positive_label = positive_label_in(values, positive_label)
    if positive_label is None:
        if len(values) != 2:
            raise DataError(
                Problem(
                    file,
                    column,
                    f"target has {len(values)} labels, need 2",
                    "set `positive_label` or fix the data",
                )
            )
        positive_label = sorted(values, key=str)[-1]
    return (labels.astype(str) == str(positive_label)).astype("int8")


def _finish(df: pd.DataFrame, spec: FeatureSpec, s: DataSettings):
    df = df.copy()
    for col in spec.categorical:
        df[col] = df[col].astype("string").astype(object).where(df[col].notna(), None)
    for col in spec.numeric:
        df[col] = df[col].astype("float64")
    if s.sample_frac < 1:
        df = df.sample(frac=s.sample_frac, random_state=s.seed)
    if df[TIME].notna().all():
        df = df.sort_values(TIME, kind="stable")
    spec.counts["rows"] = len(df)
    spec.counts["positive"] = int(df[spec.target].sum())
    return df.reset_index(drop=True), spec


def assign_periods(df: pd.DataFrame, s: DataSettings) -> pd.Series:
    """Period label of each row: calendar periods of `_time`, or equal chunks in row order."""
    if df[TIME].notna().all():
        codes, periods = pd.factorize(df[TIME].dt.to_period(s.period))
        return pd.Series(periods.astype(str).to_numpy()[codes], index=df.index)
    chunk = np.arange(len(df)) * s.row_periods // max(len(df), 1)
    return pd.Series([f"part-{i + 1:02d}" for i in chunk], index=df.index)
