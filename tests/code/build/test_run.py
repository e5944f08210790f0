"""`make build`: a line per task, the warnings counted, everything in the log, and a failure
of ours shown as its message."""

import re
import sys

GATE_FAILURE = """\
Executing cell: 3:  50%|#####     | 3/6
\x1b[0;31m---------------------------------------------------------------------------\x1b[0m
Traceback (most recent call last):
  File "/x/ploomber_engine/ipython.py", line 10, in run
nbmlops.registry.gates.GateError: the challenger fails the promotion gates:
 metric baseline  challenger delta        allowed status
roc_auc     None    0.857499  None  [0.5000, inf]   pass
  brier     None    0.173755  None [-inf, 0.0850]   FAIL

ploomber.exceptions.TaskBuildError: Error when executing task 'evaluate'. Partially executed
Need help? https://ploomber.io/community
"""


def test_a_build_failure_of_ours_is_its_message_with_the_task():
    from nbmlops.build.run import clear_message

    task, message, kind = clear_message(GATE_FAILURE)
    assert (task, kind) == ("evaluate", "GateError")
    assert message.splitlines()[0] == "the challenger fails the promotion gates:"
    assert message.splitlines()[-1].endswith("FAIL") and len(message.splitlines()) == 4
    unexpected = GATE_FAILURE.replace("nbmlops.registry.gates.GateError", "KeyError")
    assert clear_message(unexpected) is None  # anything else: the traceback is shown


def test_a_full_disk_is_said_as_such_and_a_warning_that_mentions_one_is_not(tmp_path):
    from nbmlops.build.run import _no_space
    from tests.conftest import copy_project

    env = copy_project(tmp_path / "project") / "env.ci.yaml"
    survived = "» [1/3] train: ran in 2 s\ntrain: its CPU seconds were not kept ([Errno 28] No "
    survived += "space left on device)\n"
    assert _no_space(survived + GATE_FAILURE, str(env)) is None  # the gates stopped it
    named = GATE_FAILURE.replace(
        "nbmlops.registry.gates.GateError: the challenger fails the promotion gates:",
        f"OSError: [Errno 28] No space left on device: '{tmp_path}/products/m.pkl'",
    )
    task, message, kind = _no_space(survived + named, str(env))
    assert (task, kind) == ("evaluate", "DiskFull")
    assert message.startswith(f"no space left on device writing {tmp_path}/products/m.pkl (")
    unnamed = GATE_FAILURE.replace(
        "nbmlops.registry.gates.GateError: the challenger fails the promotion gates:",
        "OSError: [Errno 28] Error writing bytes to file. Detail: [errno 28] No space left on "
        "device",
    )
    message = _no_space(unnamed, str(env)).message
    assert message.startswith("no space left on device (free now: the products' folder ")
    assert "the temporary folder" in message and "run again" in message


#: What a build's process prints: its marked lines among progress bars, a kernel's message,
#: warnings of two kinds, Ploomber's table; `make build` shows the first and counts the others.
LOUD = r"""
import sys
print("Loading pipeline...")
print("» [1/2] ingest: ran in 1.2 s (no product yet)", flush=True)
sys.stdout.write("Executing:  50%|#####     | 1/2\rExecuting: 100%|##########| 2/2\n")
print("[IPKernelApp] WARNING | Kernel is running over TCP without encryption.")
print("/x/scipy/stats.py:12: RuntimeWarning: divide by zero encountered in divide")
print("/x/scipy/stats.py:12: RuntimeWarning: divide by zero encountered in divide")
print("/x/mlflow/models.py:3: UserWarning: pickle")
print("warning: batch 2024-05: prediction drift")
sys.stdout.write("\\rExecuting:  45%|####      | 9/20")  # another worker's bar, mid-line
print("» [2/2] evaluate: ran in 3.4 s (after ingest)")
print("name      Ran?      Elapsed (s)")
"""


def test_a_build_prints_its_lines_counts_the_warnings_and_logs_everything(tmp_path, capsys):
    from nbmlops.build import run

    loud = tmp_path / "ploomber"
    loud.write_text(f"#!{sys.executable}\n{LOUD}")
    loud.chmod(0o755)
    env = tmp_path / "env.demo.yaml"
    env.write_text("{}\n")
    assert run.run(str(env), [], str(loud)) == 0
    shown = capsys.readouterr().out.splitlines()
    log = tmp_path / "logs" / "build-demo.log"
    assert shown[:2] == ["[1/2] ingest: ran in 1.2 s (no product yet)",
                         "[2/2] evaluate: ran in 3.4 s (after ingest)"]  # fmt: skip
    assert shown[2] == f"warnings: 4 (2 RuntimeWarning, 1 UserWarning, 1 warning), in {log}"
    assert re.match(rf"build \S+ passed in \d+ s; full log: {re.escape(str(log))}$", shown[3])
    assert len(shown) == 4
    assert "Executing: 100%" in log.read_text() and "Ran?" in log.read_text()


def test_each_env_file_has_its_own_build_log():
    from nbmlops.build.run import log_path

    names = [log_path(e).name for e in ("env.yaml", "env.ci.yaml", "env.patients.yml", "my.yaml")]
    assert names == ["build-default.log", "build-ci.log", "build-patients.log", "build-my.log"]


def test_a_failure_without_a_traceback_shows_its_last_lines(tmp_path, capsys):
    from nbmlops.build import run

    usage = tmp_path / "ploomber"
    usage.write_text(f"#!{sys.executable}\nimport sys\nprint('Executing: 0%|')\n"
                     "print('usage: ploomber build [-h]')\n"
                     "print('ploomber build: error: unrecognized arguments: --env--x')\n"
                     "sys.exit(2)\n")  # fmt: skip
    usage.chmod(0o755)
    (tmp_path / "env.demo.yaml").write_text("{}\n")
    assert run.run(str(tmp_path / "env.demo.yaml"), [], str(usage)) == 2
    said = capsys.readouterr()
    assert "error: unrecognized arguments: --env--x" in said.out
    assert said.err.strip().startswith("build failed; full log:")


def test_a_build_against_a_registry_that_does_not_answer_fails_before_any_task(
    tmp_path, capsys, monkeypatch
):
    """A whole build would train every candidate and only then fail at evaluate; it fails
    first, in one line, and Ploomber is never started."""
    import json
    import shutil

    from nbmlops.build import run
    from nbmlops.tools.loadtest import free_port
    from tests.conftest import PROJECT

    for name in ("pipeline.yaml", "env.ci.yaml"):
        shutil.copy2(PROJECT / name, tmp_path / name)
    started = tmp_path / "ploomber-started"
    fake = tmp_path / "ploomber"
    fake.write_text(f"#!{sys.executable}\nopen({str(started)!r}, 'w').close()\n")
    fake.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    assert run.run(str(tmp_path / "env.ci.yaml"), [], str(fake)) == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert said[0] == "build failed before any task ran:"
    assert "cannot be reached" in said[1] and said[1].endswith("nothing was built")
    assert len(said) == 2 and not started.exists()
    (record,) = [json.loads(p.read_text()) for p in tmp_path.rglob("build.json")]
    assert (record["status"], record["kind"]) == ("failed", "RegistryError")
    assert run.run(str(tmp_path / "env.ci.yaml"), ["--partially", "ingest"], str(fake)) != 2
    assert started.exists()  # a partial build does not need the registry: Ploomber decides


def test_a_registry_that_answers_its_health_check_but_no_query_stops_the_build_too(
    tmp_path, capsys, monkeypatch
):
    """MLflow's /health answers without its database: a build asks a real query first."""
    import http.server
    import shutil
    import threading

    from nbmlops.build import run
    from tests.conftest import PROJECT

    class HalfAlive(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the standard library's name
            self.send_response(200 if self.path == "/health" else 500)
            self.end_headers()
            self.wfile.write(b"OK" if self.path == "/health" else b"database is down")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HalfAlive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for name in ("pipeline.yaml", "env.ci.yaml"):
            shutil.copy2(PROJECT / name, tmp_path / name)
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{server.server_port}")
        assert run.run(str(tmp_path / "env.ci.yaml"), ["--force"], "/nonexistent") == 2
    finally:
        server.shutdown()
    said = capsys.readouterr().err.strip().splitlines()
    assert said[0] == "build failed before any task ran:"
    assert "answers, but not a registry query" in said[1] and said[1].endswith("nothing was built")
