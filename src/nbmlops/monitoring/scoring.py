"""Batch scoring: the champion answers, the challenger scores the same rows beside it in shadow.

If the champion cannot be loaded (missing or tampered artifact) or fails while scoring, the
previous champion answers instead, and every row says which version answered and why.
Scored inputs and outputs are kept immutably in the scored store, named by their content hash.
"""

from __future__ import annotations

import os
import stat
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import storage
from ..calibration import threshold_of
from ..metrics.scores import CHUNK_ROWS, predict_proba
from ..metrics.tally import Tally
from ..registry.errors import RegistryError
from ..registry.loading import load_version
from ..registry.runs import version_with_hash
from ..registry.store import Store, store_errors
from ..registry.versions import CHAMPION, NO_HISTORY, alias_version, champion_history
from ..spec import BATCH, FeatureSpec
from ..storage import TMP, read_json, sha256_file


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
    summary: pd.DataFrame | None = None  # per window (`summarize`), from `score_files`
    scored_file: Path | None = None  # the scored rows as kept, from `score_files`


def _candidates(store: Store, challenger: str) -> list[Scorer]:
    """Models allowed to answer, in order: champion, then earlier champions, newest first."""
    history = champion_history(store)
    champion = alias_version(store, CHAMPION)
    if champion is None:
        return [Scorer(challenger, "acting champion (no champion yet)")]
    earlier = [v for v in reversed(history) if v != champion]
    return [Scorer(champion, "champion")] + [Scorer(v, "fallback") for v in dict.fromkeys(earlier)]


class _Scoring:
    """The serving queue and the shadow challenger, scoring one piece of a window at a time."""

    def __init__(self, store: Store, challenger: str, spec: FeatureSpec, loader=None):
        self.loader = loader or (lambda version: load_version(store, version))
        with store_errors(store, "reading the champion"):
            self.queue = _candidates(store, challenger)
            champion = alias_version(store, CHAMPION)
        self.result = ShadowResult(pd.DataFrame(), champion=champion, challenger=challenger)
        self.shadow = _load(challenger, self.loader, self.result.events, "challenger")
        self.spec = spec
        self.shadow_failed: set[str] = set()

    def piece(self, name: str, rows: pd.DataFrame) -> pd.DataFrame:
        """Scores of `rows` of window `name`: who answered, and the challenger beside it."""
        proba, scorer = _serve(self.queue, self.loader, rows, self.spec, self.result.events, name)
        out = pd.DataFrame({BATCH: name, "served_proba": proba, "served_version": scorer.version,
                            "served_role": scorer.role,
                            "served_threshold": threshold_of(scorer.model)},
                           index=rows.index)  # fmt: skip
        out["challenger_proba"] = out["challenger_threshold"] = np.nan
        if self.shadow is not None and name not in self.shadow_failed:
            try:
                out["challenger_proba"] = predict_proba(self.shadow, rows, self.spec)
                out["challenger_threshold"] = threshold_of(self.shadow)
            except Exception as exc:  # noqa: BLE001 - a failing shadow never affects the answer
                self.shadow_failed.add(name)  # said once; the rest of the window goes unscored
                self.result.events.append(
                    f"{name}: challenger v{self.result.challenger} failed in shadow: {exc}"
                )
        target = self.spec.target
        out[target] = rows[target].to_numpy(dtype=np.float64) if target in rows else np.nan
        return out


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
    scoring = _Scoring(store, challenger, spec, loader)
    frames = [scoring.piece(name, rows) for name, rows in windows.items()]
    scoring.result.scores = pd.concat(frames, ignore_index=True)
    return scoring.result


def _schema(sources: list[tuple[str | None, Path]], spec: FeatureSpec):
    """The kept rows' columns: the inputs' types, made one across the source files, then scores."""
    import pyarrow as pa

    from . import stream

    schemas = [stream.schema(path, spec.columns) for _, path in sources]
    inputs = pa.unify_schemas([pa.schema([s.field(c) for c in spec.columns]) for s in schemas],
                              promote_options="permissive")  # fmt: skip
    scores = pa.schema([(BATCH, pa.string()), ("served_proba", pa.float64()),
                        ("served_version", pa.string()), ("served_role", pa.string()),
                        ("served_threshold", pa.float64()), ("challenger_proba", pa.float64()),
                        ("challenger_threshold", pa.float64()),
                        (spec.target, pa.float64())])  # fmt: skip
    return pa.schema(list(inputs.remove_metadata()) + list(scores)), scores


def score_files(
    store: Store,
    challenger: str,
    sources: list[tuple[str | None, Path]],
    spec: FeatureSpec,
    scores_path: str | Path,
    scored_store: str | Path,
    chunk_rows: int = CHUNK_ROWS,
    loader=None,
) -> ShadowResult:
    """Score Parquet files in chunks, as `score` scores frames: memory is bounded by the chunk.

    `sources` are (window, file): the whole file as one window, or, with no window name, one
    window per batch of the file. The scores are written to `scores_path` and the scored rows
    (inputs beside every model's output) to a file of the scored store, each piece as it is
    scored; the result holds the per-window summary (`summarize`) and that file, not the scores.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from . import stream

    rows_schema, scores_schema = _schema(sources, spec)
    scoring = _Scoring(store, challenger, spec, loader)
    summary = _Summaries(spec)
    with storage.atomic_path(scores_path) as tmp, _scored_file(scored_store) as (kept, final):
        with pq.ParquetWriter(tmp, scores_schema) as scores, \
                pq.ParquetWriter(kept, rows_schema) as rows:  # fmt: skip
            for source, path in sources:
                for name, piece in stream.pieces(path, spec.columns, source, chunk_rows,
                                                 optional=(spec.target,)):  # fmt: skip
                    out = scoring.piece(name, piece).reset_index(drop=True)
                    summary.add(out)
                    scores.write_table(pa.Table.from_pandas(out, scores_schema))
                    both = pd.concat([piece[spec.columns].reset_index(drop=True), out], axis=1)
                    rows.write_table(pa.Table.from_pandas(both, rows_schema))
        scoring.result.scored_file = final()
    scoring.result.summary = summary.done()
    return scoring.result


def served(path: str | Path, window: str) -> tuple[np.ndarray, np.ndarray]:
    """The served model's probability and decision threshold for each row of one window of a
    scores file, in order (empty when the file has no such window)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["served_proba", "served_threshold"],
                          filters=[(BATCH, "==", window)])  # fmt: skip
    return table.column(0).to_numpy(), table.column(1).to_numpy()


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
    raise RegistryError(
        "no model could score: champion and every earlier champion failed: " + "; ".join(events)
    )


def champion_record_note(store: Store, champion_record: str | Path) -> str:
    """Whether the committed champion record (the baseline file) names the registry's champion.

    The record is matched by its model file's hash, not its version number (a fresh store
    numbers its own versions from 1). The build reruns scoring when that file changes, as it
    does with every promotion and rollback; a champion moved by other means is named here."""
    path = Path(champion_record)
    champion = alias_version(store, CHAMPION)
    shown = f"v{champion}" if champion else "none"
    if not path.is_file():
        return (f"no committed champion record ({path.name}); the registry's champion is "
                f"{'v' + champion if champion else 'none yet'}")  # fmt: skip
    record = read_json(path)
    named = f"v{record.get('version', '')}"
    holding = version_with_hash(store, str(record.get("sha256", "")))
    if holding is None and champion is None:
        return (f"{path.name} records {named} as champion, a model this store does not hold "
                f"({NO_HISTORY}); the challenger answers as acting champion")  # fmt: skip
    if holding is None:
        return (f"warning: {path.name} records {named} as champion, a model this store does "
                f"not hold; the registry's champion is {shown}")  # fmt: skip
    if holding == champion:
        return f"champion v{champion}, the model {path.name} records" + (
            f" as {named}" if named != shown else ""
        )
    return (f"warning: {path.name} records v{holding}'s model as champion but the registry's "
            f"champion is {shown}: the alias was moved without `make promote` or "
            "`make rollback`")  # fmt: skip


def summarize(scores: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Per window: who answered, disagreement with the challenger, both models' ROC AUC."""
    summaries = _Summaries(spec)
    for _, group in scores.groupby(BATCH, sort=False):
        summaries.add(group)
    return summaries.done()


class _Summaries:
    """Window summaries taken from scores piece by piece (a window's pieces come together), each
    model's labels and probabilities as counts (`Tally`): memory does not grow with the rows.

    A window's summary: who answered, the share of rows where the challenger decides otherwise
    (where it scored every row), and both models' ROC AUC where every row has a label and both
    classes occur."""

    def __init__(self, spec: FeatureSpec):
        self.spec, self.rows, self.name = spec, [], None

    def add(self, scores: pd.DataFrame) -> None:
        name = str(scores[BATCH].iloc[0])
        if name != self.name:
            self._close()
            self.name, self.served, self.shadow = name, Tally(), Tally()
            self.versions, self.roles, self.differ, self.unshadowed = {}, {}, 0, 0
        labels = scores[self.spec.target].to_numpy(dtype=np.float64)
        served = scores["served_proba"].to_numpy(dtype=np.float64)
        shadow = scores["challenger_proba"].to_numpy(dtype=np.float64)
        served_at = scores["served_threshold"].to_numpy(dtype=np.float64)
        shadow_at = scores["challenger_threshold"].to_numpy(dtype=np.float64)
        self.served.add(labels, served, served_at)
        scored = ~np.isnan(shadow)
        self.unshadowed += int(len(shadow) - scored.sum())
        self.shadow.add(labels[scored], shadow[scored], shadow_at[scored])
        # each model decides at its own threshold: the share of rows decided otherwise
        self.differ += int(((served >= served_at) != (shadow >= shadow_at))[scored].sum())
        self.versions.update(dict.fromkeys(scores["served_version"]))
        self.roles.update(dict.fromkeys(scores["served_role"]))

    def _close(self) -> None:
        if self.name is None:
            return
        rows = self.served.rows
        row = {
            "batch": self.name,
            "rows": rows,
            "served_by": ", ".join(f"v{v}" for v in self.versions),
            "role": ", ".join(self.roles),
            "disagreement": self.differ / rows if not self.unshadowed else np.nan,
        }
        if self.served.both_classes:
            row["served_roc_auc"] = self.served.roc_auc().value
            if not self.unshadowed:
                row["challenger_roc_auc"] = self.shadow.roc_auc().value
        self.rows.append(row)

    def done(self) -> pd.DataFrame:
        self._close()
        self.name = None
        return pd.DataFrame(self.rows)


@contextmanager
def _scored_file(folder: str | Path):
    """(a file to write the scored rows to, a function that keeps it once written).

    The scored store keeps each content once, read-only, as `<sha256>.parquet`; the file being
    written has a name the build's sweep removes if the write is interrupted (storage.TMP)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".incoming.", suffix=f".parquet{TMP}", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)

    def final() -> Path:
        path = folder / f"{sha256_file(tmp)[:32]}.parquet"
        if not path.exists():
            os.chmod(tmp, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            os.replace(tmp, path)
        return path

    try:
        yield tmp, final
    finally:
        tmp.unlink(missing_ok=True)


def keep_scored(scored_inputs: pd.DataFrame, folder: str | Path) -> Path:
    """Write the scored rows once, read-only, as `<sha256>.parquet`; keep an identical one."""
    with _scored_file(folder) as (tmp, final):
        scored_inputs.to_parquet(tmp, index=False)
        return final()
