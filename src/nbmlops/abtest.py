"""An online experiment read from the request archive and its labels: which arm each labelled
record was given, each arm's losses, and the sequential test's decision.

The service decides from it (and rolls a worse canary back), `make live` shows it, and
`make promote` takes it as evidence, so all three read the same files the same way. While an
experiment runs the service keeps, on every record it answers, the experiment's champion and
canary versions and the record's arm; an experiment is the records of one such pair, so both
arms cover the same time, and a new champion or canary starts another.

Each arm is what its users got: a record the canary was to answer and, missing its deadline,
the champion answered counts in the canary's arm with that answer, and a record of the
champion's arm the fallback answered counts in the champion's. With a `key`, records of one key
value are not independent (one customer), so the unit is the key value: each counts once, by
its records' mean loss.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import storage
from .metrics import sequential
from .records import KEY, LABELS_FILE, OUTCOME, Finder
from .settings import ExperimentSettings

#: `served_arm` of a record: the champion's arm or the canary's.
CHAMPION_ARM, CANARY_ARM = "champion", "canary"
#: The archive's columns naming the experiment a record was answered in.
PAIR = ["experiment_champion", "experiment_canary"]
#: The archive folder's file of canary rollbacks, kept by the service (`serving.canary`).
STATE_FILE = "experiment.json"
#: Why a canary was rolled back: its labels (beside one champion) or its latency (beside any).
LABELS, LATENCY = "labels", "latency"


@dataclass(frozen=True)
class Experiment:
    """One canary version against one champion version, and where the test stands."""

    champion: str  # versions
    canary: str
    result: sequential.Sequence
    unit: str  # "record", or the key whose values are the units

    @property
    def decision(self) -> str:
        return self.result.decision

    def summary(self) -> dict:
        """The test as JSON can hold it: a figure not known yet (no labels in an arm, no
        interval before `min_labels`) is None, never NaN or infinity."""
        r = self.result

        def known(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        return {"champion": f"v{self.champion}", "canary": f"v{self.canary}",
                "decision": r.decision, "unit": self.unit, "labels_champion": r.champion.n,
                "labels_canary": r.canary.n, "loss_champion": known(r.champion.mean),
                "loss_canary": known(r.canary.mean), "difference": known(r.difference),
                "low": known(r.low), "high": known(r.high),
                "labels_needed": r.labels_needed}  # fmt: skip


def experiments(archive: pd.DataFrame, labels: pd.DataFrame,
                settings: ExperimentSettings) -> list[Experiment]:  # fmt: skip
    """Every experiment the archive shows, with its test on the labels so far, the one
    answered last first."""
    if archive.empty or any(c not in archive for c in PAIR) or labels.empty:
        return []
    ran = archive[archive["experiment_canary"].notna() & archive["experiment_champion"].notna()]
    if ran.empty:
        return []
    rows = ran.merge(labels[[*KEY, OUTCOME]], on=KEY, how="inner")
    key = settings.key if settings.key and settings.key in archive else None
    found = []
    for (champion, canary), mine in ran.groupby([ran[c].astype(str) for c in PAIR]):
        labelled = rows[(rows[PAIR[0]].astype(str) == champion)
                        & (rows[PAIR[1]].astype(str) == canary)]  # fmt: skip
        arms = [_arm(labelled[labelled["served_arm"] == arm], settings, key)
                for arm in (CHAMPION_ARM, CANARY_ARM)]  # fmt: skip
        result = sequential.decide(*arms, settings.confidence, settings.min_gain,
                                   settings.min_labels)  # fmt: skip
        found.append((mine["received_at"].max(),
                      Experiment(champion, canary, result, key or "record")))  # fmt: skip
    return [e for _, e in sorted(found, key=lambda f: f[0], reverse=True)]


def _losses(rows: pd.DataFrame, settings: ExperimentSettings) -> pd.Series:
    """Each labelled record's loss under the experiment's metric, at its served threshold."""
    threshold = rows["served_threshold"].astype(float) if "served_threshold" in rows else 0.5
    return pd.Series(sequential.losses(rows[OUTCOME].astype(int),
                                       rows["served_proba"].astype(float), settings.metric,
                                       threshold), index=rows.index)  # fmt: skip


def _arm(rows: pd.DataFrame, settings: ExperimentSettings, key: str | None) -> sequential.Arm:
    loss = _losses(rows, settings)
    if key is not None:  # one unit per key value: its records' mean loss
        loss = loss.groupby(rows[key].astype(str)).mean()
    return sequential.Arm.of(loss.to_numpy())


#: The archive's columns an experiment's test reads (and the key's, when there is one).
COLUMNS = ["request_id", "record", "received_at", "served_arm", "served_proba",
           "served_threshold", *PAIR]  # fmt: skip
#: How long a label whose archived record is not found yet is looked for (a record still on
#: its way to the archive is found at the next check; one that waited in the service's memory
#: through a full disk, later): a day.
PENDING_SECONDS = 86_400.0


class Running:
    """One experiment's test kept up to date as labels arrive, for the service: each check
    reads the labels file's new lines only, and the archived records of those labels only
    (`records.Finder`); each arm is kept as running sums (with a key, per key value). Memory
    grows with the experiment's labels, never with the requests answered, and the decision is
    the one `experiments` reaches on the same files."""

    def __init__(self, folder: str | Path, settings: ExperimentSettings, champion: str,
                 canary: str):  # fmt: skip
        self.folder, self.settings = Path(folder), settings
        self.champion, self.canary = champion, canary
        self.finder = Finder(self.folder)
        self.offset = 0  # bytes of the labels file read
        self.counted: set[tuple[str, int]] = set()  # labels of this experiment, counted
        self.pending: dict[tuple[str, int], tuple[int, float]] = {}  # (outcome, since)
        self.arms = {CHAMPION_ARM: sequential.Arm(), CANARY_ARM: sequential.Arm()}
        self.units: dict[str, dict[str, list[float]]] = {CHAMPION_ARM: {}, CANARY_ARM: {}}

    def update(self) -> Experiment:
        """Take the labels that arrived since the last call; the test as it stands."""
        for row in self._new_labels():
            label = (str(row["request_id"]), int(row["record"]))
            if label not in self.counted and label not in self.pending:  # the first stands
                self.pending[label] = (int(row[OUTCOME]), time.monotonic())
        if self.pending:
            self._match()
        key = self.settings.key
        if key:
            arms = [sequential.Arm.of([t / n for t, n in self.units[arm].values()])
                    for arm in (CHAMPION_ARM, CANARY_ARM)]  # fmt: skip
        else:
            arms = [self.arms[CHAMPION_ARM], self.arms[CANARY_ARM]]
        result = sequential.decide(*arms, self.settings.confidence, self.settings.min_gain,
                                   self.settings.min_labels)  # fmt: skip
        return Experiment(self.champion, self.canary, result, key or "record")

    def _new_labels(self) -> list[dict]:
        """The whole lines appended to the labels file since the last read."""
        path = self.folder / LABELS_FILE
        try:
            with path.open("rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size < self.offset:  # an append that failed was cut back: read on from there
                    self.offset = size
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        whole = data[: data.rfind(b"\n") + 1]  # a line still being written waits
        self.offset += len(whole)
        out = []
        for line in whole.splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut off by a crash
                continue
        return out

    def _match(self) -> None:
        """Count the pending labels whose records this experiment answered."""
        key = self.settings.key
        rows = self.finder.rows({r for r, _ in self.pending}, COLUMNS + ([key] if key else []))
        rows["record"] = rows["record"].astype(int)
        rows["request_id"] = rows["request_id"].astype(str)
        keys = list(rows[KEY].itertuples(index=False, name=None))
        rows = rows.loc[[k in self.pending for k in keys]]  # a request's other records: unlabelled
        found = set(rows[KEY].itertuples(index=False, name=None))
        now = time.monotonic()
        for label, (_, since) in list(self.pending.items()):  # not archived yet: look again
            if label not in found and now - since > PENDING_SECONDS:
                del self.pending[label]
        outcomes = {k: self.pending.pop(k)[0] for k in found}  # of this experiment or not
        mine = rows[(rows[PAIR[0]].astype(str) == self.champion)
                    & (rows[PAIR[1]].astype(str) == self.canary)].copy()  # fmt: skip
        if mine.empty:
            return
        mine[OUTCOME] = [outcomes[k] for k in mine[KEY].itertuples(index=False, name=None)]
        loss = _losses(mine, self.settings)
        for arm in (CHAMPION_ARM, CANARY_ARM):
            of = mine["served_arm"] == arm
            if key:
                units = self.units[arm]
                for value, x in zip(mine.loc[of, key].astype(str), loss[of], strict=True):
                    unit = units.setdefault(value, [0.0, 0])
                    unit[0] += x
                    unit[1] += 1
            else:
                self.arms[arm] += sequential.Arm.of(loss[of].to_numpy())
        self.counted.update(mine[KEY].itertuples(index=False, name=None))


def read_rollbacks(folder: str | Path) -> list[dict]:
    """Every rollback the archive folder's state file keeps (none without one)."""
    path = Path(folder) / STATE_FILE
    return storage.read_json(path).get("rollbacks", []) if path.is_file() else []


def rolled_back(folder: str | Path, champion: str | None, canary: str) -> str | None:
    """Why `canary` was rolled back: for its labels beside `champion`, or for its latency
    beside any champion; None when it was not. A state file that cannot be read counts as a
    rollback, said so: routing to a canary is never the default when in doubt."""
    try:
        kept = read_rollbacks(folder)
    except (OSError, ValueError) as exc:
        return f"{STATE_FILE} cannot be read ({type(exc).__name__}); fix or delete it"
    for r in reversed(kept):
        if str(r.get("canary")) == canary and (r.get("kind") == LATENCY
                                               or str(r.get("champion")) == champion):  # fmt: skip
            return r["why"]
    return None
