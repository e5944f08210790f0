"""`make registry-server`: a shared MLflow tracking server backed by PostgreSQL, on loopback.

    python -m nbmlops.commands.registryserver start [--home .registry] [--port 5005]
                                                    [--pg-port 55432]
    python -m nbmlops.commands.registryserver stop [--home .registry]

PostgreSQL comes from the machine: the folder in NBMLOPS_PG_BIN, `pg_config --bindir`, or the
newest /usr/lib/postgresql/*/bin; when none is found, Debian's `postgresql` package is installed
with apt-get (with sudo when not root). Its cluster lives in HOME/postgres and listens on
127.0.0.1 only, for the password made once in HOME/postgres-password (its owner's alone), so
other users of the machine cannot reach the registry's database. It opens no Unix socket: a
socket's path has a limit of 107 bytes, which a deep HOME (a CI runner's temporary folder)
passes, and every client here connects over TCP. PostgreSQL refuses to run
as root, so as root the cluster belongs to the `postgres` user that the package creates, and
lives in that user's home (/var/lib/postgresql/nbmlops/) when it cannot reach HOME.

`mlflow server` keeps runs and the model registry in the database `mlflow` and serves the
artifacts itself from HOME/artifacts: clients see `mlflow-artifacts:` URIs, never a path of the
server's disk. Both keep running after `start` returns; `stop` ends them. `start` on a running
server only says where it is; a port that another program answers on is an error, and a
start that fails leaves nothing running. Point every project at it with
`export MLFLOW_TRACKING_URI=http://127.0.0.1:PORT`.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .. import storage

VARIABLE = "NBMLOPS_PG_BIN"
STATE = "server.json"
PASSWORD_FILE = "postgres-password"


def find_postgres(environ=os.environ) -> Path | None:
    """The folder of PostgreSQL's server programs (initdb, pg_ctl, postgres), or None."""
    chosen = environ.get(VARIABLE)
    candidates = [chosen] if chosen else []
    if not chosen and shutil.which("pg_config"):
        done = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates += [done.stdout.strip()] if done.returncode == 0 else []
    if not chosen:
        versions = glob.glob("/usr/lib/postgresql/*/bin")
        number = lambda p: [int(x) for x in re.findall(r"\d+", Path(p).parent.name)]  # noqa: E731
        candidates += sorted(versions, key=number, reverse=True)
    for folder in candidates:
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    return None


@dataclass(frozen=True)
class Server:
    home: Path
    port: int = 5005
    pg_port: int = 55432

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def backend(self) -> str:
        # psycopg2 by name: SQLAlchemy 2.1 takes plain postgresql:// for psycopg 3; the
        # password comes from PGPASSWORD, so it is never on a command line
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.pg_port}/mlflow"

    def postgres_folder(self) -> Path:
        """Where the cluster lives: in HOME (which must exist), unless we are root and the
        postgres user cannot reach HOME (a home folder of root's): then in that user's home."""
        if os.geteuid() != 0 or subprocess.run(_as_postgres(["test", "-x", str(self.home)]),
                                                capture_output=True).returncode == 0:  # fmt: skip
            return self.home / "postgres"
        digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
        return Path("/var/lib/postgresql/nbmlops") / digest


def _as_postgres(command: list[str]) -> list[str]:
    """`command` as the postgres user when we are root (PostgreSQL refuses root)."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str], what: str, env=None) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done


def healthy(uri: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=timeout) as answer:
            return answer.status == 200
    except OSError:
        return False


def _password(home: Path) -> str:
    """The postgres user's password, made once and kept in HOME (readable by its owner only):
    PostgreSQL on loopback still refuses other users of this machine."""
    path = home / PASSWORD_FILE
    if not path.is_file():
        storage.write_text(path, secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def _client_env(home: Path) -> dict[str, str]:
    return os.environ | {"PGPASSWORD": _password(home)}


def start_postgres(folder: Path, port: int, bindir: Path, home: Path) -> str:
    """Make the cluster in `folder` if there is none and start it on `port`; its version."""
    cluster = folder / "cluster"
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    folder.chmod(0o700)
    if not (cluster / "PG_VERSION").is_file():
        pwfile = folder / "initdb-password"
        pwfile.write_text(_password(home))
        pwfile.chmod(0o600)
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        try:
            _run(_as_postgres([str(bindir / "initdb"), "-D", str(cluster), "-U", "postgres",
                               "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
                               "--locale=C"]), "initdb")  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
    status = subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "status", "-D",
                                          str(cluster)]), capture_output=True)  # fmt: skip
    if status.returncode != 0:
        # no Unix socket (an empty socket directory list): TCP on loopback only
        options = f"-c unix_socket_directories='' -p {port} -c listen_addresses=127.0.0.1"
        log = folder / "server.log"
        started = subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "start", "-w", "-t",
                                               "60", "-D", str(cluster), "-l", str(log), "-o",
                                               options]), capture_output=True)  # fmt: skip
        if started.returncode != 0:
            tail = (
                log.read_text(errors="replace").strip().splitlines()[-3:] if log.is_file() else []
            )
            raise RuntimeError(f"PostgreSQL did not start on 127.0.0.1:{port}: "
                               + " / ".join(tail))  # fmt: skip
    env = _client_env(home)
    query = "SELECT 1 FROM pg_database WHERE datname = 'mlflow'"
    exists = _run([str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                   "-tAc", query], "psql", env)  # fmt: skip
    if exists.stdout.strip() != "1":
        _run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
              "mlflow"], "createdb", env)  # fmt: skip
    return (cluster / "PG_VERSION").read_text().strip()


def _ours(pid: int) -> bool:
    """Whether `pid` is still an MLflow server (not a process that reused its number)."""
    try:
        return b"mlflow" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def running_state(home: Path) -> dict | None:
    """What HOME/server.json records, if that server is still running and answering."""
    state_file = home / STATE
    if not state_file.is_file():
        return None
    state = storage.read_json(state_file)
    return state if state.get("pid") and _ours(state["pid"]) and healthy(state["uri"]) else None


def start(server: Server, bindir: Path, wait_seconds: float = 180.0) -> dict:
    """PostgreSQL, then `mlflow server` on it; what is running, as written to HOME/server.json.
    A server this HOME already runs is only reported; a port something else answers on is an
    error, as is a failed start, which leaves nothing running."""
    state_file = server.home / STATE
    state = running_state(server.home)
    if state:
        if (state["uri"], state["pg_port"]) != (server.uri, server.pg_port):
            raise RuntimeError(f"{server.home} already runs a server at {state['uri']} "
                               f"(PostgreSQL on port {state['pg_port']}); stop it first "
                               "(make registry-server-stop)")  # fmt: skip
        return state
    if state_file.is_file():
        stop(server.home)  # what a stopped or crashed server left
    if healthy(server.uri):
        raise RuntimeError(f"port {server.port} already answers at {server.uri}, and not with "
                           f"a server of {server.home}; stop that one, or choose another port "
                           "(REGISTRY_PORT=)")  # fmt: skip
    server.home.mkdir(parents=True, exist_ok=True)
    folder = server.postgres_folder()
    version = start_postgres(folder, server.pg_port, bindir, server.home)
    state = {"uri": server.uri, "pid": None, "backend": server.backend,
             "postgresql": version, "pg_port": server.pg_port, "bindir": str(bindir),
             "postgres_folder": str(folder), "cluster": str(folder / "cluster"),
             "artifacts": str(server.home / "artifacts")}  # fmt: skip
    (server.home / "artifacts").mkdir(parents=True, exist_ok=True)
    with open(server.home / "mlflow.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", server.backend,
             "--artifacts-destination", str(server.home / "artifacts"), "--host", "127.0.0.1",
             "--port", str(server.port), "--workers", "2"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            # no job runner (its worker processes serve GenAI jobs, which a registry never runs)
            env=_client_env(server.home) | {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
                                             "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )  # fmt: skip
    state["pid"] = proc.pid
    storage.write_json(state_file, state)  # from here on, stop() ends whatever started
    deadline = time.monotonic() + wait_seconds
    while proc.poll() is None and not healthy(server.uri) and time.monotonic() < deadline:
        time.sleep(0.5)
    if proc.poll() is None and healthy(server.uri):
        return state
    why = (f"exited ({proc.returncode})" if proc.poll() is not None
           else f"did not answer within {wait_seconds:.0f} s")  # fmt: skip
    stop(server.home)
    raise RuntimeError(f"mlflow server {why}; see {server.home / 'mlflow.log'}")


def stop(home: Path, wait_seconds: float = 15.0) -> bool:
    """End the server and PostgreSQL started in `home` and wait for both; False if none was
    recorded. Raises when PostgreSQL does not stop."""
    state_file = home / STATE
    if not state_file.is_file():
        return False
    state = storage.read_json(state_file)
    pid = state.get("pid")
    if pid and _ours(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait_seconds
        while _ours(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # our own child, when started in this process
            time.sleep(0.1)
        if _ours(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    ctl = [str(Path(state["bindir"]) / "pg_ctl"), "-D", state["cluster"]]
    if subprocess.run(_as_postgres([*ctl, "status"]), capture_output=True).returncode == 0:
        _run(_as_postgres([*ctl, "stop", "-m", "fast", "-w"]), "stopping PostgreSQL")
    state_file.unlink()
    return True


def install_command(is_root: bool, has_sudo: bool, package: str) -> list[list[str]] | None:
    """apt-get's commands for a Debian package, with sudo when not root; None when neither
    (`make browser` installs Chromium with them too)."""
    if not (is_root or has_sudo):
        return None
    lead = [] if is_root else ["sudo", "-n", "env", "DEBIAN_FRONTEND=noninteractive"]
    env = ["env", "DEBIAN_FRONTEND=noninteractive"] if is_root else []
    return [lead + env + ["apt-get", "update", "-qq"],
            lead + env + ["apt-get", "install", "-y", "-qq", package]]  # fmt: skip


def can_sudo() -> bool:
    if not shutil.which("sudo"):
        return False
    return subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0


def install() -> Path | None:
    """Debian's postgresql through apt-get (sudo when not root); the folder found after."""
    commands = install_command(os.geteuid() == 0, can_sudo(), "postgresql")
    if commands is None or not shutil.which("apt-get"):
        return None
    print("installing postgresql (Debian package) for the shared MLflow server", flush=True)
    for command in commands:
        if subprocess.run(command, stdout=subprocess.DEVNULL).returncode:
            return None
    return find_postgres()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop", "find"])
    parser.add_argument("--home", type=Path, default=Path(".registry"))
    parser.add_argument("--port", type=int, default=5005, help="MLflow's port (default 5005)")
    parser.add_argument("--pg-port", type=int, default=55432,
                        help="PostgreSQL's port (default 55432)")  # fmt: skip
    args = parser.parse_args(argv)
    home = args.home.resolve()
    if args.action == "stop":
        try:
            print("stopped" if stop(home) else f"no server recorded in {home / STATE}")
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    bindir = find_postgres() or install()
    if bindir is None:
        print(f"error: no PostgreSQL found (set {VARIABLE} to the folder of initdb and pg_ctl), "
              "and it cannot be installed here (apt-get with root or sudo)",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.action == "find":
        print(f"PostgreSQL for the shared MLflow server: {bindir}")
        return 0
    server = Server(home, args.port, args.pg_port)
    running = running_state(home)
    try:
        state = start(server, bindir)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(("already running: " if running == state else "")
          + f"MLflow tracking server {state['uri']}, on PostgreSQL {state['postgresql']} "
          f"(127.0.0.1:{state['pg_port']}), artifacts in {state['artifacts']}\n"
          f"  export MLFLOW_TRACKING_URI={state['uri']}\n"
          f"  stop it with: make registry-server-stop")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
