"""MLflow tracking and model registry: candidates as runs, the best as a registered version.

The store is embedded by default (a sqlite file and a local artifact folder, both named in the
env file); setting MLFLOW_TRACKING_URI sends the same calls to a shared MLflow server.
Aliases: `challenger` marks the newest version a build registered, `champion` the version in
production, moved only by `promote` and `rollback`. Versions are never overwritten or deleted.
Every version's model file is hashed at registration and verified before it is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .. import storage
from ..settings import StoreSettings
from ..storage import read_pickle, sha256_file
from . import compiled
from .errors import IntegrityError, RegistryError  # where callers have long imported them

if TYPE_CHECKING:
    import pandas as pd

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"
MODEL_FILE = "model.pkl"
#: The version tag that holds the sha256 of every file of the version's artifact.
MANIFEST_TAG = "manifest"
#: Written by MLflow into every download of a registered version (its name and version); never
#: read when a model is loaded here.
DOWNLOAD_FILES = {"registered_model_meta"}
URI_VARIABLE = "MLFLOW_TRACKING_URI"
#: The run tag naming the registered model a run's candidate is for (one experiment serves
#: every project on a shared tracking server).
MODEL_NAME_TAG = "model_name"
#: Held-out rows (a seeded sample) a compiled form is checked on before it is stored.
COMPILE_CHECK_ROWS = 10_000


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
            _probe_server(self.tracking_uri)
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


def _probe_server(uri: str, timeout: float = 5.0) -> None:
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


def environment_tags(project: str | Path, lock_file: str | Path) -> dict[str, str]:
    """What a model came from: git commit and dirtiness, lock hash, Python and platform."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=project, capture_output=True, text=True,
                                  timeout=10)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    lock = Path(lock_file)
    return {
        "git_commit": commit or "unknown",
        "git_dirty": str(bool(git("status", "--porcelain"))) if commit else "unknown",
        "lock_sha256": sha256_file(lock) if lock.is_file() else "missing",
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def log_candidates(
    store: Store,
    evaluation,
    context: dict[str, Any],
    build_id: str,
    check_rows: pd.DataFrame | None = None,
) -> dict[str, dict]:
    """One MLflow run per candidate: params, train and held-out metrics, context tags, model.

    Each model is stored with its compiled form (nbmlops.registry.compiled) when it has one that
    gives its probabilities on `check_rows` (held-out rows); the run's `compiled` tag says which
    kernel, or why not. Returns, per candidate, the run id, the logged model's URI and its model
    file's sha256.
    """
    import mlflow

    client = store.client()
    experiment_id = store.experiment_id(client)
    holdout = evaluation.table.set_index("model").to_dict(orient="index")
    logged = {}
    for name, candidate in evaluation.candidates.items():
        info = candidate.record
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"{name}-{build_id}") as run:
            calibrated = info.get("calibration") or {}
            mlflow.log_params({**info["hyperparams"], "model": name,
                               "estimator": info.get("estimator", ""),
                               "calibration_method": calibrated.get("method", "none"),
                               "decision_threshold": calibrated.get("threshold", "")})  # fmt: skip
            mlflow.log_metrics({f"holdout_{k}": float(v) for k, v in holdout[name].items()})
            mlflow.log_metrics({f"train_{k}": float(v) for k, v in info["train"].items()})
            mlflow.log_metric("fit_seconds", info["fit_seconds"])
            mlflow.set_tags({**{k: str(v) for k, v in context.items()}, "build_id": build_id,
                             "candidate": name, "best": str(name == evaluation.best),
                             MODEL_NAME_TAG: store.model_name})  # fmt: skip
            mlflow.log_artifact(candidate.record_file, "metrics")
            with tempfile.TemporaryDirectory() as tmp:
                extra, why = _compiled_file(candidate.pipeline, check_rows, Path(tmp))
                mlflow.set_tag("compiled", why)
                model_info = mlflow.sklearn.log_model(
                    candidate.pipeline, name="model", serialization_format="pickle",
                    pip_requirements=_requirements(), extra_files=extra,
                )  # fmt: skip
        manifest = artifact_manifest(model_info.model_uri)
        logged[name] = {"run_id": run.info.run_id, "model_uri": model_info.model_uri,
                        "sha256": manifest[MODEL_FILE], "manifest": manifest}  # fmt: skip
    return logged


def _compiled_file(pipeline, rows: pd.DataFrame | None, folder: Path) -> tuple[list[str], str]:
    """([the compiled form's file], its kernel) or ([], why the model has none)."""
    if rows is None or rows.empty:
        return [], "no: no held-out rows to check a compiled form on"
    try:
        done = compiled.compile_pipeline(pipeline, rows.sample(min(len(rows), COMPILE_CHECK_ROWS),
                                                               random_state=0))  # fmt: skip
    except compiled.NotCompiled as exc:
        return [], f"no: {exc}"
    return [str(storage.write_bytes(folder / compiled.FILE, done.to_bytes()))], done.kernel


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("scikit-learn", "pandas", "numpy")]


def artifact_manifest(model_uri: str) -> dict[str, str]:
    """sha256 of every file of a logged model (MLmodel, the model file, environment files)."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        return _manifest(Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri,
                                                                  dst_path=tmp)))  # fmt: skip


def _manifest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in DOWNLOAD_FILES}  # fmt: skip


def _manifest_tags(manifest: dict[str, str]) -> dict[str, str]:
    """The tags a version carries for its check: the model file's hash and every file's."""
    return {"sha256": manifest[MODEL_FILE], MANIFEST_TAG: json.dumps(manifest, sort_keys=True)}


def log_report(store: Store, run_id: str, path: str | Path, folder: str = "reports") -> None:
    store.client().log_artifact(run_id, str(path), folder)


#: What a store that does not hold the committed champion's model file (a fresh one, as in CI
#: without a shared registry) means for what a build can compare.
NO_HISTORY = "no registry history in this run: set MLFLOW_TRACKING_URI to keep one"


def version_with_hash(store: Store, sha256: str, client=None) -> str | None:
    """The newest version whose model file has this sha256, or None."""
    client = client or store.client()
    found = [int(mv.version) for mv in client.search_model_versions(f"name='{store.model_name}'")
             if mv.tags.get("sha256") == sha256]  # fmt: skip
    return str(max(found)) if found else None


def register_challenger(store: Store, run: dict, tags: dict[str, Any]) -> str:
    """Register the run's model as a new version with its hash; point `challenger` at it.

    A model file byte-identical to an existing version's is not registered again: that version
    becomes the challenger. The version and its tags (the model file's sha256 among them) are
    written in one call, which the store commits as one transaction: a version never exists
    without its hash.
    """
    import mlflow

    client = store.client()
    with store_errors(store, "registering the challenger", "No version was registered."):
        version = version_with_hash(store, run["sha256"], client)
    if version is not None:
        with store_errors(store, f"marking v{version} as challenger"):
            client.set_registered_model_alias(store.model_name, CHALLENGER, version)
        return version
    with store_errors(store, "registering the challenger", "No version was registered."):
        all_tags = {**tags, **_manifest_tags(run["manifest"]), "run_id": run["run_id"]}
        version = mlflow.register_model(
            run["model_uri"], store.model_name, tags={k: str(v) for k, v in all_tags.items()}
        ).version
    consequence = (f"Version {version} is registered with its hash but is not the challenger; "
                   "the next build registers a new one.")  # fmt: skip
    with store_errors(store, f"marking v{version} as challenger", consequence):
        client.set_registered_model_alias(store.model_name, CHALLENGER, version)
    return str(version)


def alias_version(store: Store, alias: str, client=None) -> str | None:
    """The version an alias points at, or None."""
    from mlflow.exceptions import MlflowException

    client = client or store.client()
    try:
        return str(client.get_model_version_by_alias(store.model_name, alias).version)
    except MlflowException:
        return None


def champion_history(store: Store, client=None) -> list[str]:
    """Versions that have been champion, oldest first; the last one is the current champion."""
    from mlflow.exceptions import MlflowException

    client = client or store.client()
    try:
        tags = client.get_registered_model(store.model_name).tags
    except MlflowException:
        return []
    return json.loads(tags.get(HISTORY_TAG, "[]"))


def load_version(store: Store, version: str):
    """Load a registered version after checking every file of it against the hashes recorded
    at registration; the model file is then read directly (MLmodel's pointer to it is not
    followed). A version registered before manifests were recorded is checked by its model
    file's hash alone."""
    with _checked_files(store, version) as (local, _):
        return read_pickle(local / MODEL_FILE)


def load_serving(store: Store, version: str) -> tuple[Any, compiled.Compiled | None, str]:
    """(model, its compiled form or None, why none), every file checked as load_version does.
    Only a compiled form the version's manifest lists (and so hash-checked) is read."""
    with _checked_files(store, version) as (local, manifest):
        model = read_pickle(local / MODEL_FILE)
        found = [name for name in manifest if Path(name).name == compiled.FILE]
        if not found:
            return model, None, "the version was registered without a compiled form"
        try:
            return model, compiled.Compiled.read(local / found[0]), ""
        except Exception as exc:  # noqa: BLE001 - unreadable: serve the pipeline, say why
            return model, None, f"its compiled form cannot be read: {type(exc).__name__}: {exc}"


@contextmanager
def _checked_files(store: Store, version: str) -> Iterator[tuple[Path, dict[str, str]]]:
    """The version's files in a temporary folder, checked, and the manifest they were checked
    against (empty for a version registered before manifests)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = store.client()
    try:
        meta = client.get_model_version(store.model_name, version)
    except MlflowException as exc:
        raise RegistryError(f"model {store.model_name!r} has no version {version}") from exc
    expected = meta.tags.get("sha256")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{store.model_name}/{version}", dst_path=tmp))  # fmt: skip
        except (MlflowException, OSError) as exc:
            raise RegistryError(
                f"model {store.model_name!r} v{version}: artifacts cannot be read: {exc}"
            ) from exc
        model_file = local / MODEL_FILE
        actual = sha256_file(model_file) if model_file.is_file() else "missing"
        if not expected or actual != expected:
            raise IntegrityError(
                f"model {store.model_name!r} v{version}: {MODEL_FILE} has sha256 {actual[:16]}…, "
                f"registered {str(expected)[:16]}…; refusing to load it"
            )
        pinned = dict(store.pins).get(str(version))
        if pinned and manifest_sha256(meta.tags.get(MANIFEST_TAG, "")) != pinned:
            raise IntegrityError(
                f"model {store.model_name!r} v{version}: the file hashes the store lists are not "
                "those the baseline file pinned when it was promoted; refusing to load it"
            )
        manifest = json.loads(meta.tags[MANIFEST_TAG]) if MANIFEST_TAG in meta.tags else {}
        changed = manifest_changes(manifest, _manifest(local)) if manifest else []
        if changed:
            raise IntegrityError(f"model {store.model_name!r} v{version}: "
                                 f"{'; '.join(changed)}; refusing to load it")  # fmt: skip
        yield local, manifest


def manifest_sha256(tag: str) -> str:
    """The sha256 of a version's manifest tag: one hash for every file of the version."""
    return hashlib.sha256(tag.encode("utf-8")).hexdigest() if tag else ""


def manifest_changes(expected: dict[str, str], found: dict[str, str]) -> list[str]:
    """What differs between the files registered and the files found, one phrase each."""
    out = [f"{name} is missing" for name in expected if name not in found]
    out += [f"{name} was added" for name in found if name not in expected]
    out += [f"{name} has sha256 {found[name][:16]}…, registered {expected[name][:16]}…"
            for name in expected if name in found and found[name] != expected[name]]  # fmt: skip
    return out


def version_metrics(store: Store, version: str, client=None) -> dict[str, float]:
    """Held-out metrics of a version, read from its run."""
    client = client or store.client()
    meta = client.get_model_version(store.model_name, version)
    return _holdout_metrics(client.get_run(meta.run_id))


def _holdout_metrics(run) -> dict[str, float]:
    return {k.removeprefix("holdout_"): v for k, v in run.data.metrics.items()
            if k.startswith("holdout_")}  # fmt: skip


def version_details(store: Store, version: str, client=None) -> dict[str, Any]:
    """Everything a model card shows about a version."""
    client = client or store.client()
    meta = client.get_model_version(store.model_name, version)
    run = client.get_run(meta.run_id)
    return {
        "name": store.model_name,
        "version": str(meta.version),
        "aliases": sorted(meta.aliases),
        "created": datetime.fromtimestamp(meta.creation_timestamp / 1000, UTC).isoformat(
            timespec="seconds"
        ),
        "run_id": meta.run_id,
        "tags": dict(meta.tags),
        "run_tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
        "params": dict(run.data.params),
        "metrics": _holdout_metrics(run),
    }


def list_versions(store: Store):
    """All versions, newest first, with aliases and held-out metrics."""
    import pandas as pd

    client = store.client()
    rows = []
    for found in client.search_model_versions(f"name='{store.model_name}'"):
        mv = client.get_model_version(store.model_name, found.version)  # search omits aliases
        metrics = version_metrics(store, str(mv.version), client)
        rows.append({
            "version": int(mv.version),
            "aliases": ",".join(sorted(mv.aliases)),
            "candidate": mv.tags.get("candidate", ""),
            "roc_auc": metrics.get("roc_auc"),
            "pr_auc": metrics.get("pr_auc"),
            "brier": metrics.get("brier"),
            "git_commit": mv.tags.get("git_commit", "")[:10],
            "sha256": mv.tags.get("sha256", "")[:12],
        })  # fmt: skip
    columns = ["version", "aliases", "candidate", "roc_auc", "pr_auc", "brier", "git_commit",
               "sha256"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns).sort_values("version", ascending=False)


def set_champion(store: Store, version: str, history: list[str],
                 expected: list[str] | None = None) -> None:  # fmt: skip
    """Point `champion` at `version` and record the champion history on the registered model.

    With `expected` (the history as the caller read it), nothing is written unless the history
    is still that: a compare-and-set, so two changes made at once cannot interleave.
    """
    client = store.client()
    client.get_model_version(store.model_name, version)  # raises if missing
    if expected is not None and champion_history(store, client) != expected:
        raise RegistryError(
            f"model {store.model_name!r}: the champion history changed while this ran (now "
            f"{champion_history(store, client)}, read as {expected}); nothing was changed, "
            "run it again"
        )
    client.set_registered_model_tag(store.model_name, HISTORY_TAG, json.dumps(history))
    client.set_registered_model_alias(store.model_name, CHAMPION, version)


def register_candidate(store: Store, build_id: str, candidate: str) -> str:
    """Register another candidate of a build as a new version, moving no alias.

    A model to keep on hand: a fallback to promote, a second model for a serving drill.
    """
    import mlflow

    client = store.client()
    runs = client.search_runs(
        [store.experiment_id(client)],
        f"tags.build_id = '{build_id}' and tags.candidate = '{candidate}'",
    )
    # projects that share a tracking server share the experiment: keep this model's runs (runs
    # logged before runs named their model are taken only when none names it)
    runs = ([r for r in runs if r.data.tags.get(MODEL_NAME_TAG) == store.model_name]
            or [r for r in runs if MODEL_NAME_TAG not in r.data.tags])  # fmt: skip
    if not runs:
        raise RegistryError(f"build {build_id} logged no candidate {candidate!r} of model "
                            f"{store.model_name}")  # fmt: skip
    if len(runs) > 1:
        raise RegistryError(f"build {build_id} has {len(runs)} runs of candidate {candidate!r} "
                            f"(two builds of model {store.model_name} in one second?); build "
                            "again and register the new build")  # fmt: skip
    run_id = runs[0].info.run_id
    logged = client.search_logged_models([store.experiment_id(client)],
                                         f"source_run_id = '{run_id}'")  # fmt: skip
    if not logged:
        raise RegistryError(f"run {run_id} ({candidate}) has no logged model")
    uri = logged[0].model_uri
    tags = {**_manifest_tags(artifact_manifest(uri)), "run_id": run_id, "build_id": build_id,
            "candidate": candidate}  # fmt: skip
    with store_errors(store, f"registering {candidate} of build {build_id}"):
        return str(mlflow.register_model(uri, store.model_name, tags=tags).version)
