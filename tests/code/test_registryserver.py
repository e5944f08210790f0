"""`make registry-server`: PostgreSQL and `mlflow server` on loopback, started, found running,
stopped, and started again on the same data."""

from __future__ import annotations

import shutil
import subprocess

from nbmlops.registry import store as registry
from nbmlops.tools import registryserver
from nbmlops.tools.loadtest import free_port


def test_a_registry_server_keeps_its_models_across_a_restart(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    bindir = registryserver.find_postgres()
    assert bindir is not None, "no PostgreSQL: `make postgres` finds or installs it"
    tmp_path.chmod(0o755)
    home = tmp_path / "not" / "yet" / "made"
    server = registryserver.Server(home, free_port(), free_port())
    state = registryserver.start(server, bindir)
    try:
        assert registryserver.healthy(server.uri) and state["uri"] == server.uri
        assert registryserver.start(server, bindir) == state  # running: found, not started twice
        store = registry.Store(server.uri, str(home / "artifacts"), "kept")
        client = store.client()
        client.create_registered_model("kept")
        assert registryserver.stop(home)
        assert not registryserver.healthy(server.uri)
        stopped = subprocess.run(
            registryserver._as_postgres([str(bindir / "pg_ctl"), "status", "-D", state["cluster"]]),
            capture_output=True,
        )
        assert stopped.returncode == 3, stopped  # pg_ctl: no server running
        again = registryserver.start(server, bindir)
        assert again["cluster"] == state["cluster"]
        assert store.client().get_registered_model("kept").name == "kept"
    finally:
        registryserver.stop(home)
        shutil.rmtree(state["postgres_folder"], ignore_errors=True)
