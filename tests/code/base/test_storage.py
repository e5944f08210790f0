import os
import stat

import pandas as pd
import pytest

from nbmlops import storage


def test_atomic_write_keeps_old_content_when_writer_fails(tmp_path):
    target = tmp_path / "out.json"
    storage.write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), storage.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert storage.read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary left behind


def test_written_files_are_ordinary_readable_files(tmp_path):
    path = storage.write_text(tmp_path / "a" / "b.txt", "hello")
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode & stat.S_IRGRP and mode & stat.S_IROTH


def test_parquet_and_pickle_round_trip(tmp_path):
    df = pd.DataFrame({"a": [1, 2], "b": ["x", None]})
    storage.write_parquet(tmp_path / "d.parquet", df)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "d.parquet"), df)
    storage.write_pickle(tmp_path / "o.pkl", {"k": [1, 2]})
    assert storage.read_pickle(tmp_path / "o.pkl") == {"k": [1, 2]}


def test_sha256_file_matches_hashlib(tmp_path):
    import hashlib

    data = os.urandom(3 << 20)
    (tmp_path / "f").write_bytes(data)
    assert storage.sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_replace_dir_swaps_whole_folder(tmp_path):
    target = tmp_path / "reports"
    target.mkdir()
    (target / "old.html").write_text("old")
    staging = storage.staging_dir(target)
    (staging / "new.html").write_text("new")
    storage.replace_dir(staging, target)
    assert sorted(p.name for p in target.iterdir()) == ["new.html"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports"]


def test_json_writes_numpy_and_dates(tmp_path):
    import numpy as np

    storage.write_json(tmp_path / "x.json", {"n": np.int64(3), "t": pd.Timestamp("2013-01-01")})
    assert storage.read_json(tmp_path / "x.json") == {"n": 3, "t": "2013-01-01T00:00:00"}


def test_sweep_removes_only_partial_writes(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    keep = storage.write_json(tmp_path / "p" / "done.json", {"a": 1})
    (tmp_path / "p" / ".done.json.metadata").write_text("{}")  # Ploomber's, not ours
    writer = (
        "import sys, time\nfrom nbmlops import storage\n"
        "with storage.atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_text('half'); print('writing', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", writer, str(tmp_path / "p" / "x.json")],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)  # no cleanup runs: the temporary file stays
    proc.wait()
    staging = storage.staging_dir(tmp_path / "p" / "reports")
    (staging / "half.html").write_text("<p>")
    assert not (tmp_path / "p" / "x.json").exists()
    removed = storage.sweep_partial_writes([tmp_path / "p", tmp_path / "absent"])
    assert len(removed) == 2 and staging in removed
    left = sorted(p.name for p in (tmp_path / "p").iterdir())
    assert left == [".done.json.metadata", "done.json"] and keep.is_file()


def test_an_interrupted_archive_write_of_scored_rows_is_swept(tmp_path):
    """The scored-rows archive writes under a temporary name; killed mid-write, it is swept."""
    import signal
    import subprocess
    import sys

    writer = (
        "import sys, time\nimport pandas as pd\nfrom nbmlops.monitoring import scoring\n"
        "def slow(self, path, **kw):\n"
        "    open(path, 'wb').write(b'half'); print('writing', flush=True); time.sleep(60)\n"
        "pd.DataFrame.to_parquet = slow\n"
        "scoring.keep_scored(pd.DataFrame({'a': [1]}), sys.argv[1])\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", writer, str(tmp_path / "scored")],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    left = list((tmp_path / "scored").iterdir())
    assert len(left) == 1 and left[0].name.startswith(".incoming.")
    assert storage.sweep_partial_writes([tmp_path / "scored"]) == left
    assert not list((tmp_path / "scored").iterdir())


def test_an_append_is_all_or_nothing_and_ends_a_line_cut_off_before(tmp_path):
    """A write that fails part way (here: a file-size limit, as a full disk would) leaves the
    file as it was; an append after a line a crash cut off starts on a line of its own."""
    import subprocess
    import sys

    from nbmlops.records import json_lines

    path = tmp_path / "labels.jsonl"
    path.write_text('{"a": 1}\n{"a": ')  # the second line was cut off
    storage.append_json_lines(path, [{"a": 2}])
    assert json_lines(path) == [{"a": 1}, {"a": 2}]
    size = path.stat().st_size
    child = (
        "import resource, signal, sys\n"
        "from nbmlops import storage\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({size + 1000}, {size + 1000}))\n"
        "try:\n"
        f"    storage.append_json_lines({str(path)!r}, [{{'a': 'x' * 100}}] * 500)\n"
        "except OSError as exc:\n"
        "    print(exc.errno)\n"
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
    assert done.stdout.strip() == "27", done.stderr  # EFBIG: it failed part way
    assert path.stat().st_size == size and json_lines(path) == [{"a": 1}, {"a": 2}]
