"""The dataset: join the raw tables, label the rows, and split by time into windows."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError, Problem
from ..settings import DataSettings
from ..spec import BATCH, CONTROL, PERIOD, REFERENCE, TIME, TRAINING, FeatureSpec
from .sources import NYCFLIGHTS13, read_table, source_files

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
                Problem(file, col, f"numeric column holds text in {_text_cells(values)}",
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


def _text_cells(values: pd.Series) -> str:
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


@dataclass
class Split:
    train: pd.DataFrame
    holdout: pd.DataFrame
    batches: pd.DataFrame

    def windows(self) -> dict[str, object]:
        """The periods of each window, for run tags and model cards."""
        return {
            "train": _span(self.train),
            "holdout": _span(self.holdout),
            "batches": list(dict.fromkeys(self.batches[BATCH])),
        }

    def summary(self, target: str) -> pd.DataFrame:
        """Rows and positive rate per window and batch."""
        rows = [
            {
                "window": "train",
                "periods": _span(self.train),
                "rows": len(self.train),
                "positive_rate": self.train[target].mean(),
            },
            {
                "window": "holdout",
                "periods": _span(self.holdout),
                "rows": len(self.holdout),
                "positive_rate": self.holdout[target].mean(),
            },
        ]
        for name, batch in self.batches.groupby(BATCH, sort=False):
            rows.append(
                {
                    "window": f"batch {name}",
                    "periods": _span(batch),
                    "rows": len(batch),
                    "positive_rate": batch[target].mean(),
                }
            )
        return pd.DataFrame(rows)


def time_split(df: pd.DataFrame, spec: FeatureSpec, s: DataSettings, file: str) -> Split:
    """Train on the first periods, hold out the next, and make one batch of every later period;
    with `split: latest`, train and hold out just before the newest `batch_periods` periods."""
    df = df.copy()
    df[PERIOD] = assign_periods(df, s)
    periods = list(dict.fromkeys(df[PERIOD]))
    if s.split == "latest":
        return _split(df, spec, s, file, *_latest_windows(periods, s, file))
    needed = s.reference_periods + 1
    if len(periods) < needed:
        raise DataError(
            Problem(
                file,
                s.time_column,
                f"data spans {len(periods)} periods; the split needs "
                f"{needed} ({s.reference_periods} reference + at least 1 batch)",
                split_hint(df, spec.target, s),
            )
        )
    train_p = periods[: s.reference_periods - s.holdout_periods]
    hold_p = periods[s.reference_periods - s.holdout_periods : s.reference_periods]
    return _split(df, spec, s, file, train_p, hold_p)


def _latest_windows(periods: list, s: DataSettings, file: str) -> tuple[list, list]:
    """With `split: latest`: the training and held-out periods just before the newest
    `batch_periods` periods."""
    needed = s.holdout_periods + s.batch_periods + 1
    if len(periods) < needed:
        what = (
            f"data spans {len(periods)} periods; `split: latest` needs {needed} (at least "
            f"1 to train on, {s.holdout_periods} held out, {s.batch_periods} batch)"
        )
        raise DataError(Problem(file, s.time_column, what))
    hold_end = len(periods) - s.batch_periods
    hold_start = hold_end - s.holdout_periods
    start = 0 if s.train_periods is None else max(0, hold_start - s.train_periods)
    return periods[start:hold_start], periods[hold_start:hold_end]


def _split(df: pd.DataFrame, spec: FeatureSpec, s: DataSettings, file: str, train_p: list,
           hold_p: list) -> Split:  # fmt: skip
    """Training and held-out windows of the periods named; every later period is a batch
    (periods before the training window, with `split: latest`, are left out)."""
    train = df[df[PERIOD].isin(train_p)]
    holdout = df[df[PERIOD].isin(hold_p)]
    for name, window in (("train", train), ("holdout", holdout)):
        if len(window) < s.min_rows_per_window or window[spec.target].nunique() < 2:
            raise DataError(
                Problem(
                    file,
                    spec.target,
                    f"the {name} window has {len(window)} rows and "
                    f"{window[spec.target].nunique()} classes; need {s.min_rows_per_window} "
                    "rows and both classes",
                    split_hint(df, spec.target, s),
                )
            )
    order = {p: i for i, p in enumerate(dict.fromkeys(df[PERIOD]))}
    batches = df[df[PERIOD].map(order) > order[hold_p[-1]]].copy()
    batches[BATCH] = batches[PERIOD]
    batches[CONTROL] = ""
    if s.control_batches:
        batches = pd.concat([batches, control_batches(holdout, spec, s.seed)], ignore_index=True)
    return Split(train.reset_index(drop=True), holdout.reset_index(drop=True), batches)


#: Calendar periods a split may use, shortest first.
PERIODS = ("D", "W", "M", "Q", "Y")
#: Without a time column: how many row-order parts a split may use.
ROW_PARTS = (12, 10, 8, 6, 5, 4, 3)


@dataclass(frozen=True)
class SplitOption:
    """A split the data supports: the settings that differ, and the rows of each window."""

    changes: dict
    train_rows: int
    holdout_rows: int
    batches: int
    holdout_positives: int = 0
    train_positives: int = 0
    batch_rows: int = 0  # the median batch's rows
    reference_share: float = 0.0  # of all rows, in the training and held-out windows

    def __str__(self) -> str:
        keys = ", ".join(f"{k}: {v}" for k, v in self.changes.items()) or "the settings as they are"
        batches = f"{self.batches} batch" + ("es" if self.batches != 1 else "")
        return (f"{keys} (training {self.train_rows:,} rows, held-out {self.holdout_rows:,}, "
                f"{batches})")  # fmt: skip


def _splits(df: pd.DataFrame, target: str, s: DataSettings, holdouts) -> list[SplitOption]:
    """Every split of `df` (with `_time` and a 0/1 target) by calendar periods (or row-order
    parts, without times) that gives the training and the held-out window
    `min_rows_per_window` rows and both classes, and leaves a batch to monitor."""
    timed = bool(df[TIME].notna().all())
    choices = [("period", p) for p in PERIODS] if timed else [
        ("row_periods", n) for n in dict.fromkeys((s.row_periods, *ROW_PARTS))]  # fmt: skip
    found = []
    for key, value in choices:
        trial = replace(s, **{key: value})
        counts = df.groupby(assign_periods(df, trial), sort=False)[target].agg(["size", "sum"])
        rows, positives = counts["size"].to_numpy(), counts["sum"].to_numpy()
        for holdout in dict.fromkeys(holdouts):
            for reference in range(holdout + 1, len(rows)):
                windows = (slice(0, reference - holdout), slice(reference - holdout, reference))
                sizes = [(int(rows[w].sum()), int(positives[w].sum())) for w in windows]
                if all(n >= s.min_rows_per_window and 0 < k < n for n, k in sizes):
                    wanted = {key: value, "reference_periods": reference,
                              "holdout_periods": holdout}  # fmt: skip
                    changes = {k: v for k, v in wanted.items() if getattr(s, k) != v}
                    found.append(SplitOption(
                        changes, sizes[0][0], sizes[1][0], len(rows) - reference,
                        holdout_positives=sizes[1][1], train_positives=sizes[0][1],
                        batch_rows=int(np.median(rows[reference:])),
                        reference_share=float(rows[:reference].sum() / rows.sum()),
                    ))  # fmt: skip
    return found


def split_options(df: pd.DataFrame, target: str, s: DataSettings) -> list[SplitOption]:
    """Every split `_splits` finds (held out: `holdout_periods` or one period), the one
    closest to the settings first."""
    options = _splits(df, target, s, (s.holdout_periods, 1))

    def distance(option: SplitOption):
        reference = option.changes.get("reference_periods", s.reference_periods)
        holdout = option.changes.get("holdout_periods", s.holdout_periods)
        return ({"period", "row_periods"} & option.changes.keys() != set(),
                abs(reference - s.reference_periods), holdout != s.holdout_periods)  # fmt: skip

    return sorted(options, key=distance)


#: What a proposed split aims at: positives in the held-out window, batches to monitor, and
#: the share of rows the models learn from and are judged on.
PROPOSAL_POSITIVES, PROPOSAL_BATCHES, PROPOSAL_SHARE = 10, (3, 12), 0.6
#: What a proposed split must have: positives to learn from, and held out to be judged on.
MIN_TRAIN_POSITIVES, MIN_HOLDOUT_POSITIVES = 5, 3


def enough_positives(option: SplitOption) -> bool:
    return (option.train_positives >= MIN_TRAIN_POSITIVES
            and option.holdout_positives >= MIN_HOLDOUT_POSITIVES)  # fmt: skip


def propose_split(df: pd.DataFrame, target: str, s: DataSettings) -> SplitOption | None:
    """The split a new project starts with, or None when the data supports none.

    Of every split `_splits` finds (held out: one to three periods) with `MIN_TRAIN_POSITIVES`
    positives to train on and `MIN_HOLDOUT_POSITIVES` held out, the first that best meets,
    in this order: `PROPOSAL_POSITIVES` positives held out (a ROC AUC on fewer is noise), a
    number of batches within `PROPOSAL_BATCHES`, batches of `min_rows_per_window` rows, and
    about `PROPOSAL_SHARE` of the rows in the training and held-out windows.
    """
    low, high = PROPOSAL_BATCHES

    def badness(option: SplitOption):
        return (
            option.holdout_positives < PROPOSAL_POSITIVES,
            not low <= option.batches <= high,
            option.batch_rows < s.min_rows_per_window,
            round(abs(option.reference_share - PROPOSAL_SHARE), 1),
            -option.holdout_positives if option.holdout_positives < PROPOSAL_POSITIVES else 0,
            abs(option.batches - (low + high) // 2),
        )

    options = [o for o in _splits(df, target, s, (1, 2, 3)) if enough_positives(o)]
    return min(options, key=badness) if options else None


def no_split_hint(df: pd.DataFrame, target: str, s: DataSettings) -> str:
    """What would give a split, when `propose_split` finds none: the positives it lacks,
    splitting by row order instead of by too few periods of time, or more rows."""
    found = _splits(df, target, s, (1, 2, 3))
    positives = int(df[target].sum())
    if found:
        return (
            f"its {positives:,} positives cannot give {MIN_TRAIN_POSITIVES} to train on and "
            f"{MIN_HOLDOUT_POSITIVES} held out in any split; add rows with positives"
        )
    if df[TIME].notna().all():
        untimed = [o for o in _splits(df.assign(**{TIME: pd.NaT}), target, s, (1, 2, 3))
                   if enough_positives(o)]  # fmt: skip
        days = df[TIME].dt.normalize().nunique()
        if untimed:
            return (f"its times fall on {days:,} day(s), too few periods to split by; leave out "
                    "the time column (no --time) to split by row order")  # fmt: skip
    need = 3 * s.min_rows_per_window
    return (
        f"add rows: a training and a held-out window of {s.min_rows_per_window} rows each "
        f"with both classes, and a batch after them, need {need:,} rows or more"
    )


def split_hint(df: pd.DataFrame, target: str, s: DataSettings) -> str:
    """What to set so the split works, or why no split can."""
    options = split_options(df, target, s)
    if options:
        return f"this split works: {options[0]}"
    return (f"no split of these {len(df):,} rows ({int(df[target].sum()):,} positive) gives the "
            f"training and the held-out window {s.min_rows_per_window} rows with both classes "
            "and leaves a batch; lower `min_rows_per_window`, or add data")  # fmt: skip


def current_files(pattern: str | None, root: str | Path, within_root: bool) -> list[Path]:
    """Files matching the `current_batches` glob (relative to `root`), sorted by name."""
    if not pattern:
        return []
    files = sorted(p for p in Path(root).glob(pattern) if p.is_file())
    for path in files:
        source_files(str(path), root, within_root)  # refuses a file outside the project
    return files


def read_current_batch(path: Path, spec: FeatureSpec, s: DataSettings) -> pd.DataFrame:
    """One file of new rows as a batch the models can score and the monitor can compare.

    Every feature the models were trained on must be a column (empty values are allowed);
    the target is optional: without it the batch is monitored for drift only.
    """
    df = read_table(path, s.missing_values)
    file = str(path)
    missing = [c for c in spec.columns if c not in df.columns]
    if missing:
        raise DataError([
            Problem(file, col, "feature the models were trained on is missing from this batch",
                    "add the column (empty values are allowed)")
            for col in missing
        ])  # fmt: skip
    out = pd.DataFrame(index=df.index)
    for col in spec.numeric:
        text = _text_cells(df[col])
        if text:
            raise DataError(Problem(file, col, f"numeric feature holds text in {text}"))
        out[col] = pd.to_numeric(df[col]).astype("float64")
    for col in spec.categorical:
        out[col] = df[col].astype("string").astype(object).where(df[col].notna(), None)
    labels = df[spec.target] if spec.target in df.columns else None
    if labels is None or labels.isna().all():
        out[spec.target] = np.nan
    elif set(labels.dropna().unique()) <= {0, 1}:  # already 0/1, as the flights target is
        out[spec.target] = labels.astype("float64")
    else:
        out[spec.target] = encode_target(labels.dropna(), s.positive_label, file, spec.target)
    has_time = s.time_column and s.time_column in df
    out[TIME] = parse_times(df[s.time_column]) if has_time else pd.NaT
    out[PERIOD] = out[BATCH] = path.name.split(".")[0]
    out[CONTROL] = ""
    return out.reset_index(drop=True)


def with_current_batches(
    batches: pd.DataFrame, files: list[Path], spec: FeatureSpec, s: DataSettings
) -> pd.DataFrame:
    """The period batches followed by one batch per current file (named by the file's stem)."""
    extra = [read_current_batch(path, spec, s) for path in files]
    names = [str(b[BATCH].iloc[0]) for b in extra]
    clash = sorted({n for n in names if names.count(n) > 1 or n in set(batches[BATCH])})
    if clash:
        where = ", ".join(map(str, files))
        raise DataError(Problem(where, None, f"batch name(s) {clash} used twice", "rename files"))
    for name, path in zip(names, files, strict=True):
        if name in (REFERENCE, TRAINING):
            said = f"a batch cannot be named {name!r}: the score task gives that name to a window"
            raise DataError(Problem(str(path), None, said, "rename the file"))
    if not extra:
        return batches
    control = batches[CONTROL] != ""
    return pd.concat([batches[~control], *extra, batches[control]], ignore_index=True)


def control_batches(holdout: pd.DataFrame, spec: FeatureSpec, seed: int) -> pd.DataFrame:
    """Two batches that check the monitoring itself.

    `control-same` is half of the reference window, so no drift should be found;
    `control-shifted` is the other half with every numeric feature moved by one standard
    deviation, so drift must be found.
    """
    same = holdout.sample(frac=0.5, random_state=seed)
    shifted = holdout.drop(same.index).copy()
    for col in spec.numeric:
        shifted[col] = shifted[col] + holdout[col].std()
    same = same.assign(**{BATCH: "control-same", CONTROL: "same"})
    shifted = shifted.assign(**{BATCH: "control-shifted", CONTROL: "shifted"})
    return pd.concat([same, shifted])


def _span(df: pd.DataFrame) -> str:
    periods = list(dict.fromkeys(df[PERIOD])) if PERIOD in df else []
    if not periods:
        return ""
    return periods[0] if len(periods) == 1 else f"{periods[0]} … {periods[-1]}"
