"""The time split: windows by calendar period or row order, a clear error naming a split that
works, the control batches; and `split: latest`, where the newest periods are batches and the
ones just before them held out and trained on, so a build on new data trains on what is recent."""

import numpy as np
import pandas as pd
import pytest

from nbmlops.data import split as splitting
from nbmlops.errors import ConfigError, DataError
from nbmlops.settings import DataSettings
from nbmlops.spec import BATCH, CONTROL, PERIOD, TIME, FeatureSpec

SPEC = FeatureSpec("y", ["x"], [])


def hourly(weeks: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = weeks * 7 * 12
    return pd.DataFrame({"x": rng.normal(size=n), "y": rng.integers(0, 2, n),
                         TIME: pd.date_range("2024-01-01", periods=n, freq="2h")})  # fmt: skip


def windows(df: pd.DataFrame, **params) -> dict:
    s = DataSettings.from_params({"target": "y", "time_column": "t", "period": "W", **params})
    return splitting.time_split(df, SPEC, s, "visits.csv").windows()


def week(i: int) -> str:
    start = pd.Timestamp("2024-01-01") + pd.Timedelta(weeks=i - 1)
    return f"{start.date()}/{(start + pd.Timedelta(days=6)).date()}"


def test_latest_trains_just_before_the_newest_periods_and_moves_with_new_data():
    assert windows(hourly(10), split="latest") == {
        "train": f"{week(1)} … {week(8)}", "holdout": week(9), "batches": [week(10)]}  # fmt: skip
    assert windows(hourly(10), split="latest", train_periods=3) == {
        "train": f"{week(6)} … {week(8)}", "holdout": week(9), "batches": [week(10)]}  # fmt: skip
    # two more weeks of data: the window moves with them
    assert windows(hourly(12), split="latest", train_periods=3, batch_periods=2) == {
        "train": f"{week(7)} … {week(9)}", "holdout": week(10),
        "batches": [week(11), week(12)]}  # fmt: skip
    # the first split stays where it was
    assert windows(hourly(12))["train"] == f"{week(1)} … {week(3)}"


def test_latest_needs_periods_and_sane_settings():
    with pytest.raises(DataError, match=r"data spans 2 periods; `split: latest` needs 3"):
        windows(hourly(2), split="latest")
    bad = [
        ({"split": "newest"}, "`split` must be one of first, latest"),
        ({"train_periods": 3}, "`train_periods` applies to `split: latest`"),
        ({"split": "latest", "train_periods": 0}, "`train_periods` must be a whole number"),
        ({"split": "latest", "batch_periods": 0}, "`batch_periods` must be a whole number"),
        ({"split": "latest", "row_periods": 2}, "`split: latest` needs at least 3"),
    ]
    for params, message in bad:
        with pytest.raises(ConfigError, match=message):
            DataSettings.from_params({"target": "y"} | params)


@pytest.mark.parametrize(
    ("label", "end", "after"),
    [
        ("2013-05", "2013-04", True),
        ("2013-04", "2013-04", False),
        ("2013-11-15", "2013-11", False),  # a file named by a day inside the month
        ("2013-12-01", "2013-11", True),
        ("2024-03-11/2024-03-17", "2024-03-04/2024-03-10", True),
        ("2024-03-08", "2024-03-04/2024-03-10", False),
        ("part-100", "part-99", True),  # not as text
        ("part-03", "part-03", False),
        ("incoming", "2013-04", True),  # a current-batch file: new rows
        ("part-05", "2013-04", False),  # row parts and calendar periods do not compare
    ],
)
def test_periods_compare_by_when_they_start_and_end(label, end, after):
    from nbmlops.spec import period_after

    assert period_after(label, end) is after


def _frame(n=1200, months=8):
    rng = np.random.default_rng(1)
    t = pd.date_range("2020-01-01", periods=n, freq=f"{months * 30 * 24 // n}h")
    return pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "c": rng.choice(["a", "b"], n),
            "y": rng.integers(0, 2, n),
            TIME: t,
        }
    )


def _daily(days: int, start="2024-01-01", rate=0.3, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = pd.date_range(start, periods=days, freq="D")
    return pd.DataFrame({"x": rng.normal(size=days), "c": "a", "y": rng.random(days) < rate,
                         TIME: t}).astype({"y": "int8"})  # fmt: skip


def test_time_split_by_calendar_month():
    df = _frame()
    spec = FeatureSpec("y", ["x"], ["c"])
    s = DataSettings(target="y", reference_periods=3, holdout_periods=1)
    split = splitting.time_split(df, spec, s, "f.csv")
    assert split.train[PERIOD].unique().tolist() == ["2020-01", "2020-02"]
    assert split.holdout[PERIOD].unique().tolist() == ["2020-03"]
    assert split.batches[BATCH].iloc[0] == "2020-04"
    assert len(split.train) + len(split.holdout) + len(split.batches) == len(df)
    assert split.train[TIME].max() < split.holdout[TIME].min() < split.batches[TIME].min()
    summary = split.summary("y")
    assert summary["rows"].sum() == len(df)


def test_time_split_without_time_uses_row_chunks():
    df = _frame().assign(**{TIME: pd.NaT})
    s = DataSettings(target="y", row_periods=6, reference_periods=3)
    split = splitting.time_split(df, FeatureSpec("y", ["x"], ["c"]), s, "f.csv")
    assert split.batches[BATCH].unique().tolist() == ["part-04", "part-05", "part-06"]


def test_too_few_periods_is_a_clear_error():
    df = _frame(n=300, months=2)
    s = DataSettings(target="y", reference_periods=4)
    with pytest.raises(DataError, match="data spans 2 periods; the split needs 5"):
        splitting.time_split(df, FeatureSpec("y", ["x"], ["c"]), s, "f.csv")


def test_control_batches_same_and_shifted():
    df = _frame()
    spec = FeatureSpec("y", ["x"], ["c"])
    s = DataSettings(target="y", reference_periods=3, control_batches=True)
    split = splitting.time_split(df, spec, s, "f.csv")
    same = split.batches[split.batches[CONTROL] == "same"]
    shifted = split.batches[split.batches[CONTROL] == "shifted"]
    assert len(same) + len(shifted) == len(split.holdout)
    gap = shifted["x"].mean() - split.holdout["x"].mean()
    assert gap == pytest.approx(split.holdout["x"].std(), rel=0.35)


def test_a_window_too_small_names_a_split_that_works():
    df = _daily(300)  # ten months of one row a day: a month is too small a window
    spec = FeatureSpec("y", ["x"], ["c"])
    s = DataSettings(target="y", period="M", reference_periods=3)
    with pytest.raises(DataError, match="this split works: period: Q") as caught:
        splitting.time_split(df, spec, s, "f.csv")
    option = splitting.split_options(df, "y", s)[0]
    assert f"training {option.train_rows:,} rows" in str(caught.value)
    fixed = DataSettings(**{**s.__dict__, **option.changes})
    split = splitting.time_split(df, spec, fixed, "f.csv")  # the hint's split works
    assert len(split.train) == option.train_rows and len(split.holdout) == option.holdout_rows
    assert split.batches[BATCH].nunique() == option.batches


def test_too_few_periods_names_a_split_that_works_or_says_none_can():
    spec = FeatureSpec("y", ["x"], ["c"])
    s = DataSettings(target="y", period="M", reference_periods=4)
    small = DataSettings(target="y", period="M", reference_periods=4, min_rows_per_window=10)
    with pytest.raises(DataError, match=r"this split works: reference_periods: 2 \(training 31"):
        splitting.time_split(_daily(70, rate=0.5), spec, small, "f.csv")  # spans 3 months
    with pytest.raises(DataError, match="no split of these 40 rows"):
        splitting.time_split(_daily(40, rate=0.5), spec, s, "f.csv")
    rare = _daily(400, rate=0.0)
    rare.loc[10, "y"] = 1  # one positive: no held-out window can have both classes
    with pytest.raises(DataError, match=r"no split of these 400 rows \(1 positive\)"):
        splitting.time_split(rare, spec, s, "f.csv")
