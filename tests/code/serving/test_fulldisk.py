"""A full disk under the request archive: the service runs in a mount namespace of its own
(`unshare`) with its archive on a 4 MB tmpfs, which a ballast file fills. While it is full
the service still answers, `/ready` says why it is not ready, labels are refused with 503
and nothing recorded; when the ballast goes, every record answered reaches the disk, once.
The test reaches the tmpfs through /proc/PID/root, the service's own view of the files."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from nbmlops.records import read_archive
from nbmlops.registry.store import Store
from nbmlops.registry.versions import set_champion
from nbmlops.serving.payload import RequestContract
from tests.code.registry.conftest import SPEC, Builder, make_data
from tests.code.serving.server import Server, synthetic_project
from tests.code.smalldisk import check_unshare, fill, mounted

#: The archive's filesystem: small enough to fill at once.
TMPFS_SIZE = "4m"


def _metric(text: str, name: str) -> float:
    return float(next(ln.split()[-1] for ln in text.splitlines() if ln.startswith(name + " ")))


def _wait(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def _raw_rows(folder: Path) -> int:
    """Rows as written, duplicates included: the Parquet files' and the segments' lines."""
    import pyarrow.parquet as pq

    from nbmlops.records import SEGMENTS, json_lines

    files = sum(pq.read_metadata(p).num_rows for p in folder.glob("requests-*.parquet"))
    return files + sum(len(json_lines(p)) for p in (folder / SEGMENTS).glob("*.jsonl"))


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    check_unshare()
    store = Store(f"sqlite:///{tmp_path}/mlruns/mlflow.db", str(tmp_path / "mlruns" / "art"),
                  "fulldisk")  # fmt: skip
    version = Builder(store, tmp_path / "builds").register()
    set_champion(store, version, [version])
    env = synthetic_project(tmp_path / "project", store)
    return env, version


def test_a_full_archive_disk_keeps_every_answered_record_until_space_returns(project, tmp_path):
    env, version = project
    root = env.parent
    archive = tmp_path / "archive"
    archive.mkdir()
    records = RequestContract(SPEC).example(make_data(120, 11), 120)
    server = Server(root, env_file=env.name, latency_budget_ms=2000, archive=str(archive),
                    shadow=False)  # fmt: skip
    server.args = [*mounted(archive, TMPFS_SIZE), *server.args]
    with server:
        seen = Path(f"/proc/{server.process.proc.pid}/root") / archive.relative_to("/")
        answered = [server.post(r).json()["request_id"] for r in records[:40]]
        _wait(lambda: len(read_archive(seen, ["request_id", "record"])) == 40, 30,
              "the first records never reached the archive")  # fmt: skip
        ballast = fill(seen)
        for r in records[40:]:  # answered while nothing can be written
            reply = server.post(r)
            assert reply.status_code == 200
            answered.append(reply.json()["request_id"])
        _wait(lambda: server.get("/ready").status_code == 503, 30,
              "/ready stayed 200 with a full disk under the archive")  # fmt: skip
        reason = server.get("/ready").json()["reason"]
        assert "cannot write the request archive" in reason and "No space left" in reason
        label = {"request_id": answered[0], "outcome": 1}
        refused = server.client.post("/feedback", json=label)
        assert refused.status_code == 503 and "nothing was recorded" in refused.text
        ballast.unlink()  # space returns
        _wait(lambda: server.get("/ready").status_code == 200, 30, "/ready did not come back")
        _wait(lambda: len(read_archive(seen, ["request_id", "record"])) == 120, 30,
              "records answered during the outage never reached the disk")  # fmt: skip
        kept = read_archive(seen, ["request_id", "record", "served_version"])
        assert sorted(kept["request_id"]) == sorted(answered)
        assert _raw_rows(seen) == 120  # each once on the disk, not only once as read
        assert set(kept["served_version"].astype(str)) == {version}
        assert server.client.post("/feedback", json=label).json()["accepted"] == 1
        text = server.get("/metrics").text
    assert _metric(text, "nbmlops_archive_dropped_records_total") == 0
    assert _metric(text, 'nbmlops_labels_total{status="unwritable"}') == 1
