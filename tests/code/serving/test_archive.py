"""The request archive keeps every record it is handed: on disk at once, in Parquet after
rotation, recovered after a kill, a bad row dead-lettered alone, an unwritable folder held in
memory up to its bound and counted past it."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal

import pandas as pd
import pytest

from nbmlops.serving import archive as arc
from nbmlops.serving.archive import Archive, ArchiveSettings


def _rows(n: int, start: int = 0, **extra) -> list[dict]:
    return [{"request_id": f"r{i}", "record": 0, "received_at": 1_800_000_000.0 + i,
             "dest": "IAH", "distance": 1000.0 + i, "served_proba": 0.25, **extra}
            for i in range(start, start + n)]  # fmt: skip


def _parquet_rows(folder) -> pd.DataFrame:
    files = sorted(folder.glob("*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files]) if files else pd.DataFrame()


def _segment_rows(folder) -> int:
    """Rows in the segments of an archive folder that are not yet Parquet files."""
    return sum(p.read_bytes().count(b"\n") for p in (folder / arc.SEGMENTS).glob("*.jsonl"))


def _settings(folder, **kw) -> ArchiveSettings:
    return ArchiveSettings(str(folder), **({"rotate_rows": 1000} | kw))


def test_records_are_on_disk_as_soon_as_they_are_added(tmp_path):
    archive = Archive(_settings(tmp_path))
    archive.add(_rows(3))
    assert _segment_rows(tmp_path) == 3 and archive.counts.written == 3
    assert not list(tmp_path.glob("*.parquet"))  # not yet a file's worth
    made = archive.rotate()
    assert list(_parquet_rows(tmp_path)["request_id"]) == ["r0", "r1", "r2"]
    assert made.name.startswith("requests-") and _segment_rows(tmp_path) == 0


def _write_and_die(folder: str, n: int) -> None:
    archive = Archive(_settings(folder))
    archive.add(_rows(n))
    os.kill(os.getpid(), signal.SIGKILL)  # no close, no rotation, no flush of Python buffers


def test_a_killed_writers_segment_is_recovered_by_the_next_archive(tmp_path):
    proc = mp.get_context("spawn").Process(target=_write_and_die, args=(str(tmp_path), 40))
    proc.start()
    proc.join(60)
    assert proc.exitcode == -signal.SIGKILL
    segment = next((tmp_path / arc.SEGMENTS).glob("*.jsonl"))
    with open(segment, "ab") as fh:
        fh.write(b'{"request_id": "cut sho')  # a line the kill cut short
    archive = Archive(_settings(tmp_path))
    assert archive.counts.recovered == 40 and archive.counts.dead_letter == 1
    assert len(_parquet_rows(tmp_path)) == 40 and _segment_rows(tmp_path) == 0
    dead = [json.loads(line) for line in (tmp_path / arc.DEAD_LETTER).read_text().splitlines()]
    assert dead[0]["line"].startswith('{"request_id": "cut') and "cut short" in dead[0]["reason"]
    Archive(_settings(tmp_path))  # recovering again finds nothing twice
    assert len(_parquet_rows(tmp_path)) == 40


def test_a_live_writers_segment_is_not_taken(tmp_path):
    writer = Archive(_settings(tmp_path))
    writer.add(_rows(5))
    other = Archive(_settings(tmp_path))  # a second service on the same folder
    assert other.counts.recovered == 0 and _segment_rows(tmp_path) == 5
    writer.rotate()
    assert len(_parquet_rows(tmp_path)) == 5


def test_a_segment_being_opened_is_not_taken_by_another_archive(tmp_path, monkeypatch):
    """Another archive on the folder looks for leftovers at the moment a writer has made its
    new segment but not yet locked it: the writer's rows still all reach a Parquet file."""
    other = Archive(_settings(tmp_path))
    lock, calls = arc.fcntl.flock, []

    def flock(fd, how):
        if how == arc.fcntl.LOCK_EX and not calls:  # the writer about to lock its new segment
            calls.append(other.compact_leftovers())
        return lock(fd, how)

    monkeypatch.setattr(arc.fcntl, "flock", flock)
    writer = Archive(_settings(tmp_path))
    writer.add(_rows(7))
    monkeypatch.setattr(arc.fcntl, "flock", lock)
    assert calls == [[]]  # the other archive looked, and found nothing to take
    writer.rotate()
    assert len(_parquet_rows(tmp_path)) == 7 and _segment_rows(tmp_path) == 0


def test_two_writers_with_the_same_pid_keep_segments_of_their_own(tmp_path):
    """Two containers on one folder may have the same pid and sequence number in the same
    second: neither segment replaces the other."""
    one, two = Archive(_settings(tmp_path)), Archive(_settings(tmp_path))  # same pid here
    one.add(_rows(3))
    two.add(_rows(4, start=3))
    assert len(list((tmp_path / arc.SEGMENTS).glob("segment-*.jsonl"))) == 2
    one.rotate()
    two.rotate()
    assert sorted(_parquet_rows(tmp_path)["request_id"]) == sorted(f"r{i}" for i in range(7))


def test_a_row_parquet_cannot_hold_is_dead_lettered_alone(tmp_path):
    archive = Archive(_settings(tmp_path))
    archive.add(_rows(2) + _rows(1, start=2, dest="\ud800") + _rows(2, start=3))
    archive.rotate()
    assert list(_parquet_rows(tmp_path)["request_id"]) == ["r0", "r1", "r3", "r4"]
    (dead,) = [json.loads(x) for x in (tmp_path / arc.DEAD_LETTER).read_text().splitlines()]
    assert dead["row"]["request_id"] == "r2" and dead["row"]["dest"] == "\ud800"
    assert "surrogate" in dead["reason"] and archive.counts.dead_letter == 1


def test_an_unwritable_folder_holds_rows_in_memory_up_to_the_bound(tmp_path):
    blocker = tmp_path / "archive"
    blocker.write_text("a file where the folder should be")
    now = [0.0]
    archive = Archive(_settings(blocker, buffer_bytes=2000), clock=lambda: now[0])
    archive.add(_rows(5))
    assert archive.error and "cannot write the request archive" in archive.error
    assert archive.counts.written == 0 and archive.counts.dropped == 0
    archive.add(_rows(50, start=5))  # past the bound: dropped, and counted
    assert archive.counts.dropped == 50
    blocker.unlink()
    now[0] = 2.0
    archive.tick()  # the folder is back: the buffered rows are written
    assert archive.error is None and archive.counts.written == 5
    archive.rotate()
    assert list(_parquet_rows(blocker)["request_id"]) == [f"r{i}" for i in range(5)]


def test_counts_are_reported_once(tmp_path):
    archive = Archive(_settings(tmp_path, rotate_rows=4))
    archive.add(_rows(5))
    first = archive.counts.take()
    assert first["written"] == 5 and first["files"] == 1
    assert archive.counts.take()["written"] == 0


@pytest.mark.parametrize("key", ["archive_sync_seconds", "archive_backlog_mb"])
def test_archive_settings_must_be_positive(key):
    from nbmlops.errors import ConfigError
    from nbmlops.settings import ServingSettings

    with pytest.raises(ConfigError, match=key):
        ServingSettings.from_params({key: 0}, "env.x.yaml")
