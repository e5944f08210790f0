"""The service outlives its registry: a shared MLflow server on PostgreSQL stopped, killed and
hung (SIGSTOP) under a running service. Every request is still answered by the models it
loaded, `/ready` stays ready and says the registry is unreachable, and once the registry is
back the service follows its aliases again. A promotion against the stopped registry fails in
one line and writes nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from nbmlops.commands import registryserver
from nbmlops.registry.store import Store
from nbmlops.registry.versions import CHALLENGER, set_champion
from nbmlops.serving.payload import RequestContract
from nbmlops.tools.loadtest import free_port
from tests.code.registry.conftest import SPEC, Builder, make_data
from tests.code.serving.server import Server, synthetic_project
from tests.conftest import run_env


def _wait(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A registry server of its own (this test stops it), two versions in it, and a project
    whose env file points at it, with a feature spec and held-out rows for the service."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    bindir = registryserver.find_postgres()
    assert bindir is not None, "no PostgreSQL: `make postgres` finds or installs it"
    home = tmp_path / "registry"
    tmp_path.chmod(0o755)  # PostgreSQL runs as the postgres user when the tests run as root
    server = registryserver.Server(home, free_port(), free_port())
    registryserver.start(server, bindir)
    store = Store(server.uri, str(home / "artifacts"), "outage")
    builder = Builder(store, tmp_path / "builds")
    first, second = builder.register(), builder.register()
    set_champion(store, first, [first])
    store.client().set_registered_model_alias(store.model_name, CHALLENGER, second)
    root = tmp_path / "project"
    synthetic_project(root, store, "env.outage.yaml")
    yield {"root": root, "server": server, "bindir": bindir, "store": store,
           "versions": (first, second)}  # fmt: skip
    registryserver.stop(home)


def test_the_service_answers_through_a_stopped_killed_and_hung_registry(project):
    root, server, store = project["root"], project["server"], project["store"]
    first, second = project["versions"]
    records = RequestContract(SPEC).example(make_data(50, 7), 50)
    with Server(root, env_file="env.outage.yaml", latency_budget_ms=2000) as service:
        assert service.get("/ready").json()["registry"] == "reachable"
        champion = first
        for outage in ("stopped", "killed", "hung"):
            state = registryserver.running_state(server.home)
            if outage == "stopped":
                registryserver.stop(server.home)
            elif outage == "killed":
                os.killpg(state["pid"], signal.SIGKILL)
            else:
                os.killpg(state["pid"], signal.SIGSTOP)
            ready = _wait(lambda: (r := service.get("/ready").json())["registry"] == "unreachable"
                          and r, 60, f"{outage}: /ready never said unreachable")  # fmt: skip
            assert ready["ready"] is True and "answering with the models loaded" in ready["reason"]
            models = service.get("/models").json()
            assert models["registry_reachable"] is False, outage
            assert "no answer from the registry" in models["registry_error"], outage
            answers = [service.post(r) for r in records]  # while it is away
            assert [a.status_code for a in answers] == [200] * len(records), outage
            assert {a.json()["model_version"] for a in answers} == {champion}, outage
            if outage == "stopped":  # a promotion now fails in one line and writes nothing
                promoted = subprocess.run(
                    [sys.executable, "-m", "nbmlops.commands.models", "--env",
                     str(root / "env.outage.yaml"), "promote", second, "--force"],
                    capture_output=True, text=True, env=run_env(), timeout=120)  # fmt: skip
                assert promoted.returncode == 1
                (line,) = promoted.stderr.strip().splitlines()
                assert "cannot be reached" in line and not (root / "baseline.json").exists()
            if outage == "hung":
                os.killpg(state["pid"], signal.SIGCONT)
            else:
                registryserver.start(server, project["bindir"])
            # back: the service reads the aliases again and follows a move
            champion = second if champion == first else first
            set_champion(store, champion, [first, second] if champion == second else [second,
                                                                                      first])  # fmt: skip
            _wait(lambda c=champion: service.post(records[0]).json()["model_version"] == c, 60,
                  f"after the registry was {outage}, the new champion never answered")  # fmt: skip
            assert service.get("/ready").json()["registry"] == "reachable", outage
        metrics = service.get("/metrics").text
    errors = next(ln for ln in metrics.splitlines() if ln.startswith("nbmlops_registry_errors"))
    assert float(errors.split()[-1]) > 0  # the failed looks were counted
