import numpy as np
import pandas as pd
import pytest

from nbmlops.data import dataset
from nbmlops.errors import DataError
from nbmlops.monitoring import monitor
from nbmlops.settings import DataSettings
from nbmlops.spec import TIME
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


def test_numeric_column_with_stray_text_is_an_error_not_a_category():
    values = [str(i) for i in range(99)] + ["n/a?"]
    df = pd.DataFrame({"amount": values, "y": [0, 1] * 50})
    with pytest.raises(
        DataError,
        match=r"user.csv, column 'amount': numeric column holds text in 1 rows, e.g. 'n/a\?'",
    ):
        dataset.table_dataset(df, "user.csv", DataSettings(target="y"))


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
