"""Loading a version: only when every file of it is as registered, and as the baseline file
pinned when it was promoted; the model file is read directly, never through MLmodel."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..storage import read_pickle, sha256_file
from . import compiled
from .errors import IntegrityError, RegistryError
from .runs import MANIFEST_TAG, MODEL_FILE, folder_manifest
from .store import Store


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
        changed = manifest_changes(manifest, folder_manifest(local)) if manifest else []
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
