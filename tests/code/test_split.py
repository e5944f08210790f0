"""`split: latest`: the newest periods are batches, the ones just before them held out and
trained on, so a build on new data trains on what is recent."""

import numpy as np
import pandas as pd
import pytest

from nbmlops.data import dataset
from nbmlops.errors import ConfigError, DataError
from nbmlops.settings import DataSettings
from nbmlops.spec import TIME, FeatureSpec

SPEC = FeatureSpec("y", ["x"], [])


def hourly(weeks: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = weeks * 7 * 12
    return pd.DataFrame({"x": rng.normal(size=n), "y": rng.integers(0, 2, n),
                         TIME: pd.date_range("2024-01-01", periods=n, freq="2h")})  # fmt: skip


def windows(df: pd.DataFrame, **params) -> dict:
    s = DataSettings.from_params({"target": "y", "time_column": "t", "period": "W", **params})
    return dataset.time_split(df, SPEC, s, "visits.csv").windows()


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
