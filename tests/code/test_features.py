import numpy as np
import pandas as pd
import pytest

from nbmlops.data import dataset
from nbmlops.errors import DataError
from nbmlops.monitoring import monitor
from nbmlops.settings import DataSettings
from nbmlops.spec import BATCH, CONTROL, PERIOD, TIME, FeatureSpec
from tests.helpers import breast_cancer_csv, flights_tables

LEAKY = {"dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"}


@pytest.fixture(scope="module")
def flights():
    tables = flights_tables(6000)
    df, spec = dataset.flights_dataset(tables, DataSettings(target="late"))
    return tables, df, spec


def test_flights_dataset_has_no_leakage_and_joins_weather_and_planes(flights):
    tables, df, spec = flights
    assert not LEAKY & set(spec.columns)
    assert {"temp", "visib", "plane_year", "seats", "carrier", "dest"} <= set(spec.columns)
    assert df["temp"].notna().mean() > 0.95
    assert (df["year"] - df["plane_year"]).dropna().between(0, 60).all()
    assert not spec.derived  # the dataset derives nothing: the project's features file does
    assert set(df["late"].unique()) == {0, 1}


def test_flights_cancelled_are_counted_and_excluded(flights):
    tables, df, spec = flights
    raw = tables["flights"]
    unlabelled = int(raw["arr_delay"].isna().sum())
    assert spec.counts["cancelled"] == int(raw["dep_time"].isna().sum())
    assert spec.counts["cancelled"] + spec.counts["diverted"] == unlabelled
    assert spec.counts["excluded_cancelled_or_diverted"] == unlabelled
    assert len(df) == len(raw) - unlabelled
    expected = (raw["arr_delay"].dropna() >= 15).mean()
    assert df["late"].mean() == pytest.approx(expected)


def test_flights_cancelled_can_count_as_late():
    tables = flights_tables(6000)
    df, spec = dataset.flights_dataset(tables, DataSettings(target="late", cancelled_as_late=True))
    assert len(df) == 6000
    assert spec.counts["labelled_late_because_cancelled_or_diverted"] > 0


def test_table_dataset_infers_feature_types_and_encodes_labels(tmp_path):
    df = pd.read_csv(breast_cancer_csv(tmp_path / "bc.csv"))
    s = DataSettings(target="diagnosis", positive_label="malignant", time_column="visit_date")
    data, spec = dataset.table_dataset(df, "bc.csv", s)
    assert "clinic" in spec.categorical and "mean_radius" in spec.numeric
    assert "visit_date" not in spec.columns and "diagnosis" not in spec.columns
    assert data["diagnosis"].sum() == (df["diagnosis"] == "malignant").sum()
    assert data[TIME].is_monotonic_increasing


def test_table_dataset_drops_id_like_text_columns():
    df = pd.DataFrame({"id": [f"u{i}" for i in range(300)], "x": range(300), "y": [0, 1] * 150})
    _, spec = dataset.table_dataset(df, "f.csv", DataSettings(target="y", max_categories=50))
    assert "id" in spec.dropped_columns and spec.columns == ["x"]


@pytest.mark.parametrize(
    ("frame", "settings", "message"),
    [
        (pd.DataFrame({"x": [1, 2]}), DataSettings(target="y"), "'y': target column is missing"),
        (
            pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]}),
            DataSettings(target="y"),
            "target has 3 labels",
        ),
        (
            pd.DataFrame({"x": [1, 2], "y": [0, 1], "t": ["2020-01-01", "soon"]}),
            DataSettings(target="y", time_column="t"),
            r"'t': 1 values are not dates, e.g. 'soon' \(line 3\)",
        ),
        (
            pd.DataFrame({"x": [1, 2, 3], "y": [0, 1, 0], "t": ["2020-01-01", None, "never"]}),
            DataSettings(target="y", time_column="t"),
            r"'t': 1 values are not dates, e.g. 'never' \(line 4\) \(fix or remove those rows, "
            r"or split by row order without a time column\)\n  also: user.csv, column 't': 1 "
            r"rows have no time \(line 3\)",
        ),
    ],
)
def test_table_dataset_errors_name_column_and_problem(frame, settings, message):
    with pytest.raises(DataError, match=message):
        dataset.table_dataset(frame, "user.csv", settings)


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


def test_time_split_by_calendar_month():
    df = _frame()
    spec = FeatureSpec("y", ["x"], ["c"])
    s = DataSettings(target="y", reference_periods=3, holdout_periods=1)
    split = dataset.time_split(df, spec, s, "f.csv")
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
    split = dataset.time_split(df, FeatureSpec("y", ["x"], ["c"]), s, "f.csv")
    assert split.batches[BATCH].unique().tolist() == ["part-04", "part-05", "part-06"]


def test_too_few_periods_is_a_clear_error():
    df = _frame(n=300, months=2)
    s = DataSettings(target="y", reference_periods=4)
    with pytest.raises(DataError, match="data spans 2 periods; the split needs 5"):
        dataset.time_split(df, FeatureSpec("y", ["x"], ["c"]), s, "f.csv")


def test_control_batches_same_and_shifted():
    df = _frame()
    spec = FeatureSpec("y", ["x"], ["c"])
    s = DataSettings(target="y", reference_periods=3, control_batches=True)
    split = dataset.time_split(df, spec, s, "f.csv")
    same = split.batches[split.batches[CONTROL] == "same"]
    shifted = split.batches[split.batches[CONTROL] == "shifted"]
    assert len(same) + len(shifted) == len(split.holdout)
    gap = shifted["x"].mean() - split.holdout["x"].mean()
    assert gap == pytest.approx(split.holdout["x"].std(), rel=0.35)


def test_numeric_column_with_stray_text_is_an_error_not_a_category():
    values = [str(i) for i in range(99)] + ["n/a?"]
    df = pd.DataFrame({"amount": values, "y": [0, 1] * 50})
    with pytest.raises(
        DataError,
        match=r"user.csv, column 'amount': numeric column holds text in 1 rows, e.g. 'n/a\?'",
    ):
        dataset.table_dataset(df, "user.csv", DataSettings(target="y"))


def _current(tmp_path, df: pd.DataFrame, name="2014-01.csv"):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def test_current_batch_file_becomes_a_batch_without_labels(tmp_path, flights):
    _, df, spec = flights
    rows = df[spec.columns].head(300)
    path = _current(tmp_path, rows.assign(extra_column=1))
    files = dataset.current_files("*.csv", tmp_path, within_root=True)
    batches = dataset.with_current_batches(df.head(10).assign(**{BATCH: "2013-12", CONTROL: ""}),
                                            files, spec, DataSettings(target="late"))  # fmt: skip
    batch = batches[batches[BATCH] == "2014-01"]
    assert files == [path] and len(batch) == 300
    assert batch["late"].isna().all() and (batch[CONTROL] == "").all()
    assert batch["distance"].tolist() == rows["distance"].tolist()


def test_current_batch_missing_a_feature_names_file_and_column(tmp_path, flights):
    _, df, spec = flights
    path = _current(tmp_path, df[spec.columns].drop(columns=["dest", "temp"]).head(50))
    with pytest.raises(DataError) as caught:
        dataset.read_current_batch(path, spec, DataSettings(target="late"))
    message = str(caught.value)
    assert f"{path}, column 'temp': feature the models were trained on is missing" in message
    assert "also:" in message and "column 'dest'" in message


def test_current_batch_with_text_in_a_numeric_feature(tmp_path, flights):
    _, df, spec = flights
    rows = df[spec.columns + ["late"]].head(50).astype({"distance": object})
    rows.loc[3, "distance"] = "far"
    path = _current(tmp_path, rows)
    with pytest.raises(
        DataError, match=r"column 'distance': numeric feature holds text in 1 rows, e.g. 'far'"
    ):
        dataset.read_current_batch(path, spec, DataSettings(target="late"))


def test_current_batches_with_the_same_name_are_refused(tmp_path, flights):
    _, df, spec = flights
    _current(tmp_path, df[spec.columns].head(20), "2014-01.csv")
    (tmp_path / "more").mkdir()
    _current(tmp_path, df[spec.columns].head(20), "more/2014-01.csv")
    files = dataset.current_files("**/*.csv", tmp_path, within_root=True)
    empty = pd.DataFrame({BATCH: []})
    with pytest.raises(DataError, match=r"batch name\(s\) \['2014-01'\] used twice"):
        dataset.with_current_batches(empty, files, spec, DataSettings(target="late"))


def test_a_current_batch_named_as_the_held_out_window_is_refused(tmp_path, flights):
    """Its scores would be taken for the held-out window's, and the monitor's figures with them."""
    _, df, spec = flights
    path = _current(tmp_path, df[spec.columns].head(20), "reference.csv")
    empty = pd.DataFrame({BATCH: [], CONTROL: []})
    with pytest.raises(DataError, match=r"reference.csv: a batch cannot be named 'reference'"):
        dataset.with_current_batches(empty, [path], spec, DataSettings(target="late"))


def test_unseen_categories_are_counted_per_column(flights):
    _, df, spec = flights
    batch = df.head(40).copy()
    batch.loc[:9, "carrier"] = "<script>alert(1)</script>"
    found = monitor.unseen_categories(monitor.known_categories(df.iloc[40:], spec), batch)
    assert found["carrier"] == {"rows": 10, "values": {"<script>alert(1)</script>": 10}}
    assert "origin" not in found


def test_times_with_daylight_saving_offsets_are_taken_to_utc():
    times = ["2024-03-09 10:00:00-08:00", "2024-03-11 10:00:00-07:00", "2024-11-04 09:00:00Z"]
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": ["no", "yes", "no"], "t": times})
    data, _ = dataset.table_dataset(df, "f.csv", DataSettings(target="y", time_column="t"))
    assert data[TIME].tolist() == [
        pd.Timestamp("2024-03-09 18:00"),
        pd.Timestamp("2024-03-11 17:00"),
        pd.Timestamp("2024-11-04 09:00"),
    ]
    naive = dataset.parse_times(pd.Series(["2024-01-05", "2024-01-06 13:30", None]))
    assert naive.tolist()[:2] == [pd.Timestamp("2024-01-05"), pd.Timestamp("2024-01-06 13:30")]
    assert naive.isna().tolist() == [False, False, True]
    us = dataset.parse_times(pd.Series(["01/05/2024", "01/06/2024"]))  # not ISO 8601
    assert us.tolist() == [pd.Timestamp("2024-01-05"), pd.Timestamp("2024-01-06")]


def test_constant_columns_are_dropped_with_the_reason():
    df = pd.DataFrame({"x": range(60), "site": "A", "flag": 1, "y": [0, 1] * 30})
    _, spec = dataset.table_dataset(df, "f.csv", DataSettings(target="y"))
    assert spec.columns == ["x"]
    assert spec.dropped_columns == {
        "site": "constant: every row is 'A'",
        "flag": "constant: every row is 1",
    }


@pytest.mark.parametrize(("positive", "expected"), [(True, [1, 0, 1]), (False, [0, 1, 0])])
def test_an_unquoted_yes_or_no_names_the_label_spelled_so(positive, expected):
    labels = pd.Series(["Yes", "No", "Yes"])
    assert dataset.encode_target(labels, positive, "f.csv", "y").tolist() == expected


def _daily(days: int, start="2024-01-01", rate=0.3, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = pd.date_range(start, periods=days, freq="D")
    return pd.DataFrame({"x": rng.normal(size=days), "c": "a", "y": rng.random(days) < rate,
                         TIME: t}).astype({"y": "int8"})  # fmt: skip


def test_a_window_too_small_names_a_split_that_works():
    df = _daily(300)  # ten months of one row a day: a month is too small a window
    spec = FeatureSpec("y", ["x"], ["c"])
    s = DataSettings(target="y", period="M", reference_periods=3)
    with pytest.raises(DataError, match="this split works: period: Q") as caught:
        dataset.time_split(df, spec, s, "f.csv")
    option = dataset.split_options(df, "y", s)[0]
    assert f"training {option.train_rows:,} rows" in str(caught.value)
    fixed = DataSettings(**{**s.__dict__, **option.changes})
    split = dataset.time_split(df, spec, fixed, "f.csv")  # the hint's split works
    assert len(split.train) == option.train_rows and len(split.holdout) == option.holdout_rows
    assert split.batches[BATCH].nunique() == option.batches


def test_too_few_periods_names_a_split_that_works_or_says_none_can():
    spec = FeatureSpec("y", ["x"], ["c"])
    s = DataSettings(target="y", period="M", reference_periods=4)
    small = DataSettings(target="y", period="M", reference_periods=4, min_rows_per_window=10)
    with pytest.raises(DataError, match=r"this split works: reference_periods: 2 \(training 31"):
        dataset.time_split(_daily(70, rate=0.5), spec, small, "f.csv")  # spans 3 months
    with pytest.raises(DataError, match="no split of these 40 rows"):
        dataset.time_split(_daily(40, rate=0.5), spec, s, "f.csv")
    rare = _daily(400, rate=0.0)
    rare.loc[10, "y"] = 1  # one positive: no held-out window can have both classes
    with pytest.raises(DataError, match=r"no split of these 400 rows \(1 positive\)"):
        dataset.time_split(rare, spec, s, "f.csv")


def test_numbers_in_parses_each_distinct_value_as_to_numeric_does():
    values = pd.Series(["1", "2.5", "n/a", None, "1", np.nan, 3, "1e3", "x", "2.5"] * 50)
    expected = pd.to_numeric(values, errors="coerce").astype("float64")
    assert dataset.numbers_in(values).equals(expected)
    numbers = pd.Series([1, 2, None], dtype="float64")
    assert dataset.numbers_in(numbers).equals(numbers)


def test_periods_are_labelled_in_calendar_order():
    times = pd.to_datetime(["2024-03-05", "2024-01-02", "2024-03-30", "2023-12-31"])
    df = pd.DataFrame({TIME: times}, index=[7, 8, 9, 10])
    labels = dataset.assign_periods(df, DataSettings(target="y", period="M"))
    assert labels.to_dict() == {7: "2024-03", 8: "2024-01", 9: "2024-03", 10: "2023-12"}
