"""What a build logs and registers: candidates as MLflow runs, the best as a new version.

Each run keeps the environment its model came from, and its model the hash of every file (the
manifest), which the version carries so that loading can check them. A model file identical
to a registered version's is not registered twice.
"""

from __future__ import annotations

import json
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import storage
from ..storage import sha256_file
from . import compiled
from .errors import RegistryError
from .store import Store, store_errors
from .versions import CHALLENGER

if TYPE_CHECKING:
    import pandas as pd

MODEL_FILE = "model.pkl"
#: The version tag that holds the sha256 of every file of the version's artifact.
MANIFEST_TAG = "manifest"
#: Written by MLflow into every download of a registered version (its name and version); never
#: read when a model is loaded here.
DOWNLOAD_FILES = {"registered_model_meta"}
#: The run tag naming the registered model a run's candidate is for (one experiment serves
#: every project on a shared tracking server).
MODEL_NAME_TAG = "model_name"
#: Held-out rows (a seeded sample) a compiled form is checked on before it is stored.
COMPILE_CHECK_ROWS = 10_000


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
        folder = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp)
        return folder_manifest(Path(folder))


def folder_manifest(folder: Path) -> dict[str, str]:
    """sha256 of every file in a downloaded version's folder, by its path there."""
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in DOWNLOAD_FILES}  # fmt: skip


def _manifest_tags(manifest: dict[str, str]) -> dict[str, str]:
    """The tags a version carries for its check: the model file's hash and every file's."""
    return {"sha256": manifest[MODEL_FILE], MANIFEST_TAG: json.dumps(manifest, sort_keys=True)}


def log_report(store: Store, run_id: str, path: str | Path, folder: str = "reports") -> None:
    store.client().log_artifact(run_id, str(path), folder)


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
