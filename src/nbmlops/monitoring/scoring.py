"""Batch scoring: the champion answers, the challenger scores the same rows beside it in shadow.

If the champion cannot be loaded (missing or tampered artifact) or fails while scoring, the
previous champion answers instead, and every row says which version answered and why.
Scored inputs and outputs are archived immutably, named by their content hash.
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..metrics import classification_metrics, predict_proba
from ..registry import store as registry
from ..registry.store import Store
from ..spec import BATCH, THRESHOLD, FeatureSpec
from ..storage import TMP, read_json, sha256_file

REFERENCE = "reference"  # the held-out window
TRAINING = "training"  # scored only for a monitor that compares batches with it


@dataclass
class Scorer:
    version: str
    role: str  # champion, fallback, acting champion
    model: object = None


@dataclass
class ShadowResult:
    scores: pd.DataFrame
    events: list[str] = field(default_factory=list)
    champion: str | None = None
    challenger: str | None = None


def _candidates(store: Store, challenger: str) -> list[Scorer]:
    """Models allowed to answer, in order: champion, then earlier champions, newest first."""
    history = registry.champion_history(store)
    champion = registry.alias_version(store, registry.CHAMPION)
    if champion is None:
        return [Scorer(challenger, "acting champion (no champion yet)")]
    earlier = [v for v in reversed(history) if v != champion]
    return [Scorer(champion, "champion")] + [Scorer(v, "fallback") for v in dict.fromkeys(earlier)]


def score(
    store: Store,
    challenger: str,
    windows: dict[str, pd.DataFrame],
    spec: FeatureSpec,
    loader=None,
) -> ShadowResult:
    """Score each window (name -> rows) with the serving model and the challenger in shadow.

    `loader(version)` returns a fitted model; by default, from the registry with its hash checked.
    """
    loader = loader or (lambda version: registry.load_version(store, version))
    with registry.store_errors(store, "reading the champion"):
        queue = _candidates(store, challenger)
        champion = registry.alias_version(store, registry.CHAMPION)
    result = ShadowResult(pd.DataFrame(), champion=champion, challenger=challenger)
    shadow_model = _load(challenger, loader, result.events, "challenger")
    frames = []
    for name, rows in windows.items():
        proba, scorer = _serve(queue, loader, rows, spec, result.events, name)
        out = pd.DataFrame({BATCH: name, "served_proba": proba, "served_version": scorer.version,
                            "served_role": scorer.role}, index=rows.index)  # fmt: skip
        out["challenger_proba"] = np.nan
        if shadow_model is not None:
            try:
                out["challenger_proba"] = predict_proba(shadow_model, rows, spec)
            except Exception as exc:  # noqa: BLE001 - a failing shadow never affects the answer
                result.events.append(f"{name}: challenger v{challenger} failed in shadow: {exc}")
        out[spec.target] = rows[spec.target].to_numpy()
        frames.append(out)
    result.scores = pd.concat(frames, ignore_index=True)
    return result


def _load(version: str, loader, events: list[str], role: str):
    try:
        return loader(version)
    except Exception as exc:  # noqa: BLE001 - reported, then the next model is tried
        events.append(f"{role} v{version} cannot be loaded: {exc}")
        return None


def _serve(queue: list[Scorer], loader, rows, spec, events, window: str):
    """Answer with the first model in the queue that loads and scores; drop the ones that fail."""
    while queue:
        scorer = queue[0]
        if scorer.model is None:
            scorer.model = _load(scorer.version, loader, events, scorer.role)
        if scorer.model is not None:
            try:
                return predict_proba(scorer.model, rows, spec), scorer
            except Exception as exc:  # noqa: BLE001 - fall back to the next model
                events.append(
                    f"{window}: {scorer.role} v{scorer.version} failed while scoring: {exc}"
                )
        queue.pop(0)
        if queue:
            events.append(f"{window}: falling back to v{queue[0].version}")
    raise registry.RegistryError(
        "no model could score: champion and every earlier champion failed: " + "; ".join(events)
    )


def champion_record_note(store: Store, champion_record: str | Path) -> str:
    """Whether the committed champion record (the baseline file) names the registry's champion.

    The build reruns scoring when that file changes, as it does with every promotion and
    rollback; a champion moved by other means is named here."""
    path = Path(champion_record)
    champion = registry.alias_version(store, registry.CHAMPION)
    if not path.is_file():
        return (f"no committed champion record ({path.name}); the registry's champion is "
                f"{'v' + champion if champion else 'none yet'}")  # fmt: skip
    committed = str(read_json(path).get("version", ""))
    if committed == champion:
        return f"champion v{champion}, as {path.name} records"
    return (f"warning: {path.name} records v{committed} as champion but the registry's "
            f"champion is {'v' + champion if champion else 'none'}: the alias was moved without "
            "`make promote` or `make rollback`")  # fmt: skip


def summarize(scores: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Per window: who answered, disagreement with the challenger, both models' metrics."""
    rows = []
    for name, group in scores.groupby(BATCH, sort=False):
        served = (group["served_proba"] >= THRESHOLD).astype(int)
        shadow = (group["challenger_proba"] >= THRESHOLD).astype(int)
        row = {
            "batch": name,
            "rows": len(group),
            "served_by": ", ".join(f"v{v}" for v in dict.fromkeys(group["served_version"])),
            "role": ", ".join(dict.fromkeys(group["served_role"])),
            "disagreement": float((served != shadow).mean())
            if group["challenger_proba"].notna().all()
            else np.nan,
        }
        labels = group[spec.target]
        if labels.notna().all() and labels.nunique() == 2:
            row["served_roc_auc"] = classification_metrics(labels, group["served_proba"])["roc_auc"]
            if group["challenger_proba"].notna().all():
                row["challenger_roc_auc"] = classification_metrics(
                    labels, group["challenger_proba"]
                )["roc_auc"]
        rows.append(row)
    return pd.DataFrame(rows)


def scored_rows(windows: dict[str, pd.DataFrame], scores: pd.DataFrame, spec: FeatureSpec):
    """The scored inputs beside every model's output, one row per scored row."""
    inputs = pd.concat(list(windows.values()), ignore_index=True)[spec.columns]
    return pd.concat([inputs, scores.reset_index(drop=True)], axis=1)


def archive(scored_inputs: pd.DataFrame, folder: str | Path) -> Path:
    """Write the scored rows once, read-only, as `<sha256>.parquet`; keep an identical one."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # a name the build's sweep removes if this write is interrupted (storage.TMP)
    fd, tmp_name = tempfile.mkstemp(prefix=".incoming.", suffix=f".parquet{TMP}", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        scored_inputs.to_parquet(tmp, index=False)
        final = folder / f"{sha256_file(tmp)[:32]}.parquet"
        if not final.exists():
            os.chmod(tmp, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final
