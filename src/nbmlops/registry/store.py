"""The MLflow store: where tracking and the registry live, opening it, and what is wrong with it.

The store is embedded by default (a sqlite file and a local artifact folder, both named in the
env file); setting MLFLOW_TRACKING_URI sends the same calls to a shared MLflow server. A store
that is locked, unreadable, damaged or unreachable is one RegistryError that says so.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from ..settings import StoreSettings
from .errors import RegistryError

URI_VARIABLE = "MLFLOW_TRACKING_URI"


@dataclass(frozen=True)
class Store(StoreSettings):
    """Where tracking and registry live, and the project's one registered model.

    `pins` are (version, sha256 of its manifest) pairs kept outside the store, in the committed
    baseline file: a pinned version loads only if the store still lists the same file hashes
    it had at promotion, so a writer of the store cannot change a champion's files and their
    recorded hashes together unseen.
    """

    experiment: ClassVar[str] = "nbmlops"
    pins: tuple[tuple[str, str], ...] = ()

    @classmethod
    def keys(cls) -> set[str]:
        return StoreSettings.keys()  # `pins` come from the baseline file, never the env file

    def pinned_by(self, baseline_file: str | Path | None, version: str | None = None) -> Store:
        """This store with the champion the baseline file records pinned (if it records one),
        as its `version` in this store when that is not the number the file records."""
        path = Path(baseline_file) if baseline_file else None
        if path is None or not path.is_file():
            return self
        record = json.loads(path.read_text(encoding="utf-8"))
        if not record.get("manifest_sha256"):
            return self  # a baseline written before manifests were recorded
        return replace(self, pins=((str(version or record["version"]), record["manifest_sha256"]),))

    @classmethod
    def _normalise(cls, params: dict[str, Any]) -> dict[str, Any]:
        """MLFLOW_TRACKING_URI, when set, wins over the env file's embedded store."""
        return params | {"tracking_uri": os.environ.get(URI_VARIABLE) or params["tracking_uri"]}

    def client(self):
        """An MlflowClient on this store; creates the sqlite folder and the experiment."""
        with store_errors(self, "opening the store"):
            return self._client()

    def _client(self):
        import mlflow
        from mlflow import MlflowClient

        if self.tracking_uri.startswith("sqlite:///"):
            database = Path(self.tracking_uri.removeprefix("sqlite:///"))
            try:
                database.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RegistryError(
                    f"MLflow store {self.tracking_uri}: its folder {database.parent} cannot be "
                    f"created ({exc.strerror}); fix `mlflow.tracking_uri` in the env file"
                ) from exc
            _check_database(database)
        elif self.tracking_uri.startswith(("http://", "https://")):
            probe_server(self.tracking_uri)
        # set_tracking_uri also exports MLFLOW_TRACKING_URI, which child processes (a build
        # started from a notebook or a test) would inherit; keep the process environment as it was.
        exported = os.environ.get(URI_VARIABLE)
        mlflow.set_tracking_uri(self.tracking_uri)
        if exported is None:
            os.environ.pop(URI_VARIABLE, None)
        else:
            os.environ[URI_VARIABLE] = exported
        client = MlflowClient(self.tracking_uri)
        if client.get_experiment_by_name(self.experiment) is None:
            _create_experiment(client, self.experiment, self._artifact_location())
        return client

    def _artifact_location(self) -> str | None:
        """Where a new experiment's artifacts go: `artifact_root` for the embedded store; the
        server's own choice for a tracking server (it serves them; no client's disk)."""
        if is_server_uri(self.tracking_uri):
            return None
        return Path(self.artifact_root).resolve().as_uri()

    def experiment_id(self, client) -> str:
        return client.get_experiment_by_name(self.experiment).experiment_id


def is_server_uri(uri: str | None) -> bool:
    """Whether `uri` names a tracking server (which places artifacts itself), not a file."""
    return bool(uri) and uri.startswith(("http://", "https://", "databricks"))


def _create_experiment(client, name: str, location: str | None) -> None:
    """Create experiment `name`; one that another project created meanwhile is taken as is."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_experiment(name, artifact_location=location)
    except MlflowException as exc:
        taken = exc.error_code == "RESOURCE_ALREADY_EXISTS"
        if not taken or client.get_experiment_by_name(name) is None:
            raise


#: The first bytes of every SQLite database file.
SQLITE_HEADER = b"SQLite format 3\x00"


def _check_database(path: Path) -> None:
    """A file where the store should be must be a SQLite database: MLflow would turn an empty
    file into a new, empty registry, and fail on a damaged one with a driver's traceback."""
    if not path.exists():
        return  # a new store: MLflow creates it
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise RegistryError(f"MLflow store {path}: cannot be read ({exc.strerror})") from exc
    if not head:
        raise RegistryError(
            f"MLflow store {path} is an empty file, not a registry; it was left as it is. "
            "Restore it from a backup, or delete it to start a new, empty registry"
        )
    if head != SQLITE_HEADER:
        raise RegistryError(
            f"MLflow store {path} is not a SQLite database (it starts with {head[:8]!r}); it "
            "was left as it is. Restore it from a backup, or point `mlflow.tracking_uri` at "
            "the right file"
        )


def probe_server(uri: str, timeout: float = 5.0) -> None:
    """Fail fast on an unreachable tracking server (MLflow itself retries for minutes)."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            pass
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RegistryError(
            f"MLflow tracking server {uri} cannot be reached ({reason}); start it, or unset "
            f"{URI_VARIABLE} to use the project's embedded store"
        ) from exc


_LOCKED = "database is locked"
_UNOPENABLE = "unable to open database file"


@contextmanager
def store_errors(store: Store, action: str, consequence: str = "") -> Iterator[None]:
    """Turn a locked, unopenable or unreachable store into one RegistryError that says so."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except RegistryError:
        raise
    except (MlflowException, OSError) as exc:
        text = str(exc)
        if _LOCKED in text:
            problem = "is locked by another process (database is locked)"
            hint = "retry when the other process has finished"
        elif _UNOPENABLE in text:
            problem = "cannot be opened (unable to open database file)"
            hint = "check the path and permissions in `mlflow.tracking_uri`"
        elif "Max retries exceeded" in text or "Connection refused" in text:
            problem = "cannot be reached"
            hint = f"start the server, or unset {URI_VARIABLE}"
        else:
            raise
        after = f" {consequence}" if consequence else ""
        raise RegistryError(
            f"MLflow store {store.tracking_uri} {problem} while {action}.{after} ({hint})"
        ) from exc
