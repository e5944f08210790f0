"""`/feedback`'s memory stays bounded: older requests and their labels are found on disk.

The archive is written by the service's own writer (Parquet files and a live segment); the
look-ups read only the files whose range of request ids can hold the ids asked for.
"""

from __future__ import annotations

import time
import uuid
from unittest import mock

import pandas as pd

from nbmlops import records
from nbmlops.records import Finder, new_request_id, read_archive
from nbmlops.serving.archive import Archive, ArchiveSettings
from nbmlops.serving.feedback import Feedback


def _answer(archive: Archive, n: int, size: int = 1, ids=new_request_id) -> list[str]:
    """`n` requests of `size` records each, handed to the archive; their ids."""
    out = []
    for _ in range(n):
        request_id = ids()
        archive.add([{"request_id": request_id, "record": i, "received_at": time.time(),
                      "x": float(i)} for i in range(size)])  # fmt: skip
        out.append(request_id)
        time.sleep(0.002)  # ids of later milliseconds
    return out


def test_request_ids_sort_by_the_time_they_were_given():
    first = new_request_id()
    time.sleep(0.002)
    second = new_request_id()
    assert len(first) == 32 and int(first, 16) >= 0 and first < second
    assert records.request_id_of(f'{{"request_id": "{first}", "record": 0}}') == first
    assert records.request_id_of('{"record": 0, "request_id": "x"}') is None


def test_the_finder_reads_only_the_files_that_can_hold_the_ids(tmp_path):
    archive = Archive(ArchiveSettings(str(tmp_path)))
    earlier = _answer(archive, 40, size=2)
    archive.rotate()  # a Parquet file; the later ids stay in the live segment
    later = _answer(archive, 20, size=2)
    assert len(list(tmp_path.glob("requests-*.parquet"))) == 1
    finder = Finder(tmp_path)
    wanted = [earlier[3], earlier[37], later[5], "0" * 32]
    with mock.patch.object(records, "_read_file", wraps=records._read_file) as read:
        found = finder.rows(wanted, ["x"])
    assert read.call_count == 1  # the file, not once per id
    every = read_archive(tmp_path)
    expected = every[every["request_id"].isin(wanted)][["request_id", "record", "x"]]
    pd.testing.assert_frame_equal(found.sort_values(["request_id", "record"]).reset_index(drop=True),
                                  expected.sort_values(["request_id", "record"])
                                  .reset_index(drop=True), check_dtype=False)  # fmt: skip
    assert len(found) == 6  # two records of each of the three answered ids
    with mock.patch.object(records, "_read_file", wraps=records._read_file) as read:
        assert finder.rows(later[:3], ["x"]).shape[0] == 6  # only in the segment
    assert read.call_count == 0  # the file's range ends before these ids
    archive.close()


def test_feedback_keeps_only_recent_requests_in_memory_and_finds_older_ones_on_disk(tmp_path):
    archive = Archive(ArchiveSettings(str(tmp_path)))
    feedback = Feedback(tmp_path, recent=5)
    ids = _answer(archive, 30, size=2)
    old = _answer(archive, 3, ids=lambda: uuid.uuid4().hex)  # ids of an older release
    for request_id in ids:
        feedback.answered(request_id, 2)
    archive.rotate()
    assert len(feedback.recent) == 5
    results, counts = feedback.take([
        {"request_id": ids[0], "outcome": 1},  # evicted long ago: read from the archive
        {"request_id": ids[0], "record": 1, "outcome": 0},
        {"request_id": ids[0], "record": 2, "outcome": 0},  # the request held two
        {"request_id": ids[-1], "outcome": 1},  # recent
        {"request_id": old[1], "outcome": 0},  # a random id, in a file spanning them all
        {"request_id": "f" * 32, "outcome": 1},
    ])  # fmt: skip
    assert [r["status"] for r in results] == ["accepted", "accepted", "unknown", "accepted",
                                              "accepted", "unknown"]  # fmt: skip
    assert "held 2 record(s)" in results[2]["detail"]
    assert len(feedback.labels) <= 5  # the labels of requests no longer recent are on disk only
    again, _ = feedback.take([{"request_id": ids[0], "outcome": 1},
                              {"request_id": ids[0], "record": 1, "outcome": 1},
                              {"request_id": ids[-1], "outcome": 1}])  # fmt: skip
    assert [r["status"] for r in again] == ["duplicate", "contradicts", "duplicate"]
    restarted = Feedback(tmp_path, recent=5)  # nothing in memory: all from the files
    after, _ = restarted.take([{"request_id": ids[-1], "outcome": 0},
                               {"request_id": old[1], "outcome": 0},
                               {"request_id": ids[10], "outcome": 0}])  # fmt: skip
    assert [r["status"] for r in after] == ["contradicts", "duplicate", "accepted"]
    assert counts["accepted"] == 4
    archive.close()
