"""Label sampling: which answered records a person is asked to label (`serving.label_sample`).

Outcomes that arrive on their own come from whichever records someone happened to check; an
estimate built on them can lean any way. Here a declared share of the answered records is
drawn at random, stratified: within each model that answered (version and arm) and each decile
of its scores, the same share, so every stratum is represented as it was served and the
labelled records' mean loss is an unbiased estimate of the model's without weights. Within a
stratum the records are taken in the order of a seeded hash of their key, so the draw is the
same each time it is made.

The queue is kept in the archive folder: `label-queue.jsonl` (appended, never rewritten)
records each record once it is queued, so a record asked for stays asked for as more arrive,
and `label-queue.csv` lists those still without an outcome, with their inputs and an empty
`outcome` column to fill in with 0 or 1 and send to `POST /feedback`
(`nbmlops-labels send`). The files stay beside the archive: they hold request data, which the
reports site does not publish.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import storage
from ..records import KEY, OUTCOME, read_archive, read_labels

QUEUE_LOG, QUEUE_CSV = "label-queue.jsonl", "label-queue.csv"
#: The archive's columns that describe the answer rather than the request; each shadow alias
#: adds its own (`ALIAS_version`, ...).
ANSWER_COLUMNS = {"received_at", "fallback_reason", "experiment_champion", "experiment_canary"}
SHADOW_SUFFIXES = ("_version", "_proba", "_ms", "_batch_rows", "_error", "_threshold")
DECILE = "score_decile"


@dataclass(frozen=True)
class Queue:
    """What a draw left: records queued over all draws, added by this one, still unlabelled,
    per stratum, and where the CSV is."""

    queued: int
    added: int
    waiting: int
    strata: pd.DataFrame  # served_version, served_arm, score_decile, answered, queued, labelled
    csv: Path


def _hash(keys: pd.DataFrame, seed: int) -> np.ndarray:
    return np.array([int.from_bytes(hashlib.blake2b(f"{seed}\0{r}\0{i}".encode(),
                                                    digest_size=8).digest(), "big")
                     for r, i in keys.itertuples(index=False)], dtype=np.uint64)  # fmt: skip


def strata(archive: pd.DataFrame) -> pd.DataFrame:
    """The archive with each record's stratum: its model (version and arm) and the decile of
    its score among that model's answers (ties share a decile)."""
    frame = archive.copy()
    if "served_arm" not in frame:
        frame["served_arm"] = "champion"
    frame["served_arm"] = frame["served_arm"].fillna("champion")
    frame["served_version"] = frame["served_version"].astype(str)
    ranks = frame.groupby(["served_version", "served_arm"])["served_proba"].rank(pct=True)
    frame[DECILE] = np.minimum(np.ceil(ranks * 10), 10).astype(int)
    return frame


def answer_columns(archive: pd.DataFrame) -> set[str]:
    """The columns of an archive that are not the request's fields: the answer's, and each
    shadow's (named by its `ALIAS_proba` column)."""
    found = {c for c in archive.columns if c.startswith("served_")} | ANSWER_COLUMNS
    for alias in [c.removesuffix("_proba") for c in archive.columns if c.endswith("_proba")]:
        found |= {f"{alias}{suffix}" for suffix in SHADOW_SUFFIXES}
    return found


def read_queued(folder: Path) -> pd.DataFrame:
    """The records queued so far (request_id, record)."""
    path = folder / QUEUE_LOG
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()] if path.is_file() else []  # fmt: skip
    return pd.DataFrame(rows, columns=KEY).astype({"request_id": str, "record": int})


def draw(folder: str | Path, share: float, seed: int = 0) -> Queue:
    """Queue `share` of each stratum's answered records (those queued before count), append
    the new ones to the log, and rewrite the CSV of queued records without an outcome."""
    folder = Path(folder)
    archive = read_archive(folder)
    csv = folder / QUEUE_CSV
    if archive.empty:
        empty = pd.DataFrame(columns=["served_version", "served_arm", DECILE, "answered",
                                      "queued", "labelled"])  # fmt: skip
        return Queue(0, 0, 0, empty, csv)
    frame = strata(archive)
    frame["request_id"] = frame["request_id"].astype(str)
    frame["record"] = frame["record"].astype(int)
    labels, _ = read_labels(folder)
    labelled = set(map(tuple, labels[KEY].astype({"request_id": str, "record": int})
                       .itertuples(index=False)))  # fmt: skip
    queued = set(map(tuple, read_queued(folder).itertuples(index=False)))
    keys = list(zip(frame["request_id"], frame["record"], strict=True))
    frame["queued"] = [k in queued for k in keys]
    frame["labelled"] = [k in labelled for k in keys]
    frame["order"] = _hash(frame[KEY], seed)
    new = []
    for _, part in frame.groupby(["served_version", "served_arm", DECILE]):
        want = int(np.floor(share * len(part) + 0.5))
        more = want - int(part["queued"].sum())
        if more > 0:
            new.append(part[~part["queued"]].nsmallest(more, "order")[KEY])
    added = pd.concat(new, ignore_index=True) if new else pd.DataFrame(columns=KEY)
    if len(added):
        rows = [{"request_id": r, "record": int(i)} for r, i in added.itertuples(index=False)]
        storage.append_json_lines(folder / QUEUE_LOG, rows)
        now = set(map(tuple, added.itertuples(index=False)))
        frame["queued"] |= np.array([k in now for k in keys])
    waiting = frame[frame["queued"] & ~frame["labelled"]]
    inputs = [c for c in archive.columns if c not in {*KEY} | answer_columns(archive)]
    shown = waiting[[*KEY, "served_version", "served_arm", DECILE, *inputs]].assign(**{OUTCOME: ""})
    storage.write_text(csv, shown.sort_values(KEY).to_csv(index=False))
    table = (frame.groupby(["served_version", "served_arm", DECILE])
             .agg(answered=("record", "size"), queued=("queued", "sum"),
                  labelled=("labelled", "sum")).reset_index())  # fmt: skip
    return Queue(int(frame["queued"].sum()), len(added), len(waiting), table, csv)
