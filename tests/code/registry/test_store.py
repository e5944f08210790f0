"""The MLflow store: the one the environment names, opened without exporting it, and a
locked, unreachable, uncreatable, empty or damaged store named and left as it is."""

import pytest

from nbmlops.registry.errors import RegistryError
from nbmlops.registry.runs import register_challenger
from nbmlops.registry.store import Store
from nbmlops.registry.versions import CHALLENGER, alias_version, list_versions

pytestmark = pytest.mark.both_stores


def test_tracking_uri_from_environment_wins(tmp_path, monkeypatch, builder, store):
    other = f"sqlite:///{tmp_path}/server/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", other)
    switched = Store.from_params(
        {
            "tracking_uri": store.tracking_uri,
            "artifact_root": store.artifact_root,
            "model_name": store.model_name,
        }
    )
    assert switched.tracking_uri == other
    builder.store = switched
    builder.register()
    assert len(list_versions(switched)) == 1
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert (tmp_path / "server" / "mlflow.db").is_file()
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()


def test_using_a_store_does_not_export_its_uri(store, monkeypatch):
    import os

    store.client()
    assert "MLFLOW_TRACKING_URI" not in os.environ  # builds started later must not inherit it
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere.db")
    store.client()
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:////elsewhere.db"


HOLD_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
"""


@pytest.mark.embedded_only
def test_locked_store_is_named_and_registers_nothing(store, builder):
    import subprocess
    import sys

    run = builder.log()
    db = store.tracking_uri.removeprefix("sqlite:///")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, db], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RegistryError) as caught:
            register_challenger(store, run, {"candidate": "logreg"})
    finally:
        holder.communicate("\n", timeout=30)
    message = str(caught.value)
    assert f"MLflow store {store.tracking_uri} is locked by another process" in message
    assert "retry when the other process has finished" in message
    assert list_versions(store).empty
    assert alias_version(store, CHALLENGER) is None
    assert register_challenger(store, run, {"candidate": "logreg"}) == "1"


def test_unreachable_server_fails_fast_with_a_hint(tmp_path):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = Store(f"http://127.0.0.1:{port}", str(tmp_path), "m")
    with pytest.raises(RegistryError, match=rf"server http://127.0.0.1:{port} cannot be reached"):
        store.client()  # probed first: MLflow's own retries would go on for minutes


def test_store_path_that_cannot_exist_is_named(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    store = Store(f"sqlite:///{tmp_path}/file/mlflow.db", str(tmp_path), "m")
    with pytest.raises(RegistryError, match=r"its folder .*/file cannot be created"):
        store.client()


@pytest.mark.parametrize(("content", "words"), [
    (b"", "is an empty file, not a registry"),
    (b"PK\x03\x04 not a database", "is not a SQLite database"),
])  # fmt: skip
def test_an_empty_or_damaged_store_is_named_and_left_as_it_is(tmp_path, content, words):
    db = tmp_path / "mlruns" / "mlflow.db"
    db.parent.mkdir()
    db.write_bytes(content)
    damaged = Store.from_params({"tracking_uri": f"sqlite:///{db}",
                                 "artifact_root": str(tmp_path / "artifacts"),
                                 "model_name": "m"})  # fmt: skip
    with pytest.raises(RegistryError, match=words):
        damaged.client()
    assert db.read_bytes() == content  # never re-initialised
