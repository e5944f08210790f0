"""Aliases and versions: which version is champion and which challenger, and what each holds.

`challenger` marks the newest version a build registered, `champion` the version in production,
moved only by `promote` and `rollback`; the registered model keeps the champion history.
Versions are never overwritten or deleted.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from .errors import RegistryError
from .store import Store

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"
#: What a store that does not hold the committed champion's model file (a fresh one, as in CI
#: without a shared registry) means for what a build can compare.
NO_HISTORY = "no registry history in this run: set MLFLOW_TRACKING_URI to keep one"


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
