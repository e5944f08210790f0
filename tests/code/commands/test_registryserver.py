"""`make registry-server`: PostgreSQL and `mlflow server` on loopback, started, found running,
stopped, and started again on the same data; a port another program answers on, a second
start on other ports and a client without the password are refused."""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import threading

import pytest

from nbmlops.commands import registryserver
from nbmlops.registry.store import Store
from nbmlops.tools.loadtest import free_port


@pytest.fixture
def bindir():
    found = registryserver.find_postgres()
    assert found is not None, "no PostgreSQL: `make postgres` finds or installs it"
    return found


class _Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the standard library's name
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_registry_server_keeps_its_models_across_a_restart(tmp_path, monkeypatch, bindir):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tmp_path.chmod(0o755)
    home = tmp_path / "not" / "yet" / "made"
    server = registryserver.Server(home, free_port(), free_port())
    try:
        state = registryserver.start(server, bindir)
        assert registryserver.healthy(server.uri) and state["uri"] == server.uri
        assert registryserver.start(server, bindir) == state  # running: found, not started twice
        other = registryserver.Server(home, free_port(), server.pg_port)
        with pytest.raises(RuntimeError, match="already runs a server at"):
            registryserver.start(other, bindir)
        psql = [str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(server.pg_port), "-U",
                "postgres", "-tAc", "SELECT 1"]  # fmt: skip
        no_password = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
        refused = subprocess.run(psql, env=no_password, capture_output=True, text=True)
        assert refused.returncode != 0 and "password" in refused.stderr
        store = Store(server.uri, str(home / "artifacts"), "kept")
        store.client().create_registered_model("kept")
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
        shutil.rmtree(server.postgres_folder(), ignore_errors=True)


def test_a_port_another_program_answers_on_is_refused_and_nothing_is_left_running(
        tmp_path, bindir):  # fmt: skip
    squatter = http.server.HTTPServer(("127.0.0.1", 0), _Healthy)
    threading.Thread(target=squatter.serve_forever, daemon=True).start()
    home = tmp_path / "registry"
    try:
        server = registryserver.Server(home, squatter.server_address[1], free_port())
        with pytest.raises(RuntimeError, match=f"port {server.port} already answers"):
            registryserver.start(server, bindir)
        assert not (home / registryserver.STATE).exists()
    finally:
        squatter.shutdown()
