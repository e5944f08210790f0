"""Label sampling: which answered records a person is asked to label (`serving.label_sample`).

Outcomes that arrive on their own come from whichever records someone happened to check; an
estimate built on them can lean any way. Here each answered record is drawn with the same
probability, `share`, by a seeded hash of its key (Poisson sampling): every model that
answered (version and arm) and every decile of its scores is drawn at that rate, so the
labelled records' mean loss is an unbiased estimate of each model's without weights, and a
record's draw never changes as more arrive. The strata are counted for the report: each shows
how many it answered, queued and got labelled. (Rounding a share per stratum instead would
give a small stratum none, or twice its share.)

The queue is kept in the archive folder: `label-queue.jsonl` (appended, never rewritten)
records each record once it is queued, so a record asked for stays asked for as more arrive,
and `label-queue.csv` lists those still without an outcome, with their inputs and an empty
`outcome` column to fill in with 0 or 1 and send to `POST /feedback` (`make label-send`). A
new draw keeps the outcomes already typed into the CSV and not yet sent. Text that a
spreadsheet would run as a formula (`=`, `+`, `-`, `@` first) is written with a `'` before
it. The files stay beside the archive: they hold request data, which the reports site does
not publish.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import storage
from ..records import KEY, OUTCOME, json_lines, read_archive, read_labels

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


def _draws(keys: pd.DataFrame, seed: int) -> np.ndarray:
    """Each record's number in [0, 1), fixed by the seed and its key."""
    return np.array([storage.unit_hash(seed, r, i) for r, i in keys.itertuples(index=False)],
                    dtype=float)  # fmt: skip


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
    rows = json_lines(folder / QUEUE_LOG)  # a line cut off by a crash is left out
    return pd.DataFrame(rows, columns=KEY).astype({"request_id": str, "record": int})


def typed_in(csv: Path) -> dict[tuple[str, int], str]:
    """The outcomes a person has typed into the queue's CSV so far, by record."""
    if not csv.is_file():
        return {}
    table = pd.read_csv(csv, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    if not {*KEY, OUTCOME} <= set(table.columns):
        return {}
    given = table[table[OUTCOME].str.strip() != ""]
    return {(r, int(i)): o for r, i, o in zip(given["request_id"], given["record"],
                                               given[OUTCOME], strict=True)
            if str(i).strip().lstrip("-").isdigit()}  # fmt: skip


def _safe_for_spreadsheets(frame: pd.DataFrame) -> pd.DataFrame:
    """Text a spreadsheet would run as a formula, with a `'` before it (shown, never read)."""
    out = frame.copy()
    for column in out.select_dtypes(include=object).columns:
        text = out[column].astype("string")
        risky = text.str.match(r"^[=+\-@]").fillna(False).astype(bool)
        out.loc[risky, column] = "'" + text[risky]
    return out


def draw(folder: str | Path, share: float, seed: int = 0) -> Queue:
    """Queue the records the hash draws at `share` (those queued before stay), append the new
    ones to the log, and rewrite the CSV of queued records without an outcome, keeping what
    was typed into it."""
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
    drawn = _draws(frame[KEY], seed) < share
    added = frame.loc[drawn & ~frame["queued"].to_numpy(), KEY]
    if len(added):
        rows = [{"request_id": r, "record": int(i)} for r, i in added.itertuples(index=False)]
        storage.append_json_lines(folder / QUEUE_LOG, rows)
        now = set(map(tuple, added.itertuples(index=False)))
        frame["queued"] |= np.array([k in now for k in keys])
    waiting = frame[frame["queued"] & ~frame["labelled"]]
    inputs = [c for c in archive.columns if c not in {*KEY} | answer_columns(archive)]
    typed = typed_in(csv)
    shown = _safe_for_spreadsheets(waiting[[*KEY, "served_version", "served_arm", DECILE,
                                            *inputs]])  # fmt: skip
    shown[OUTCOME] = [typed.get(k, "") for k in zip(shown["request_id"], shown["record"],
                                                    strict=True)]  # fmt: skip
    storage.write_text(csv, shown.sort_values(KEY).to_csv(index=False))
    table = (frame.groupby(["served_version", "served_arm", DECILE])
             .agg(answered=("record", "size"), queued=("queued", "sum"),
                  labelled=("labelled", "sum")).reset_index())  # fmt: skip
    return Queue(int(frame["queued"].sum()), len(added), len(waiting), table, csv)
