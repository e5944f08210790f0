"""Batches beyond the split: files of new rows, each a batch, refused with the file and the
column named when they cannot be monitored."""

import pandas as pd
import pytest

from nbmlops.data import batches, dataset
from nbmlops.errors import DataError
from nbmlops.settings import DataSettings
from nbmlops.spec import BATCH, CONTROL
from tests.helpers import flights_tables


@pytest.fixture(scope="module")
def flights():
    tables = flights_tables(6000)
    df, spec = dataset.flights_dataset(tables, DataSettings(target="late"))
    return tables, df, spec


def _current(tmp_path, df: pd.DataFrame, name="2014-01.csv"):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def test_current_batch_file_becomes_a_batch_without_labels(tmp_path, flights):
    _, df, spec = flights
    rows = df[spec.columns].head(300)
    path = _current(tmp_path, rows.assign(extra_column=1))
    files = batches.current_files("*.csv", tmp_path, within_root=True)
    found = batches.with_current_batches(df.head(10).assign(**{BATCH: "2013-12", CONTROL: ""}),
                                         files, spec, DataSettings(target="late"))  # fmt: skip
    batch = found[found[BATCH] == "2014-01"]
    assert files == [path] and len(batch) == 300
    assert batch["late"].isna().all() and (batch[CONTROL] == "").all()
    assert batch["distance"].tolist() == rows["distance"].tolist()


def test_current_batch_missing_a_feature_names_file_and_column(tmp_path, flights):
    _, df, spec = flights
    path = _current(tmp_path, df[spec.columns].drop(columns=["dest", "temp"]).head(50))
    with pytest.raises(DataError) as caught:
        batches.read_current_batch(path, spec, DataSettings(target="late"))
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
        batches.read_current_batch(path, spec, DataSettings(target="late"))


def test_current_batches_with_the_same_name_are_refused(tmp_path, flights):
    _, df, spec = flights
    _current(tmp_path, df[spec.columns].head(20), "2014-01.csv")
    (tmp_path / "more").mkdir()
    _current(tmp_path, df[spec.columns].head(20), "more/2014-01.csv")
    files = batches.current_files("**/*.csv", tmp_path, within_root=True)
    empty = pd.DataFrame({BATCH: []})
    with pytest.raises(DataError, match=r"batch name\(s\) \['2014-01'\] used twice"):
        batches.with_current_batches(empty, files, spec, DataSettings(target="late"))


def test_a_current_batch_named_as_the_held_out_window_is_refused(tmp_path, flights):
    """Its scores would be taken for the held-out window's, and the monitor's figures with them."""
    _, df, spec = flights
    path = _current(tmp_path, df[spec.columns].head(20), "reference.csv")
    empty = pd.DataFrame({BATCH: [], CONTROL: []})
    with pytest.raises(DataError, match=r"reference.csv: a batch cannot be named 'reference'"):
        batches.with_current_batches(empty, [path], spec, DataSettings(target="late"))
