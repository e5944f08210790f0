"""The time split: training, held-out and batch windows by period, and the splits `init`
proposes for a dataset (calendar periods of its time column, or parts in row order)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ..errors import DataError, Problem
from ..settings import DataSettings
from ..spec import BATCH, CONTROL, PERIOD, TIME, FeatureSpec
from .batches import control_batches
from .dataset import assign_periods


@dataclass
class Split:
    train: pd.DataFrame
    holdout: pd.DataFrame
    batches: pd.DataFrame

    def windows(self) -> dict[str, object]:
        """The periods of each window, for run tags and model cards."""
        return {
            "train": span(self.train),
            "holdout": span(self.holdout),
            "batches": list(dict.fromkeys(self.batches[BATCH])),
        }

    def summary(self, target: str) -> pd.DataFrame:
        """Rows and positive rate per window and batch."""
        rows = [
            {
                "window": "train",
                "periods": span(self.train),
                "rows": len(self.train),
                "positive_rate": self.train[target].mean(),
            },
            {
                "window": "holdout",
                "periods": span(self.holdout),
                "rows": len(self.holdout),
                "positive_rate": self.holdout[target].mean(),
            },
        ]
        for name, batch in self.batches.groupby(BATCH, sort=False):
            rows.append(
                {
                    "window": f"batch {name}",
                    "periods": span(batch),
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


def span(df: pd.DataFrame) -> str:
    periods = list(dict.fromkeys(df[PERIOD])) if PERIOD in df else []
    if not periods:
        return ""
    return periods[0] if len(periods) == 1 else f"{periods[0]} … {periods[-1]}"
