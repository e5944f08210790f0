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

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import storage
from .metrics import sequential
from .records import KEY, OUTCOME
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
        r = self.result
        return {"champion": f"v{self.champion}", "canary": f"v{self.canary}",
                "decision": r.decision, "unit": self.unit, "labels_champion": r.champion.n,
                "labels_canary": r.canary.n, "loss_champion": r.champion.mean,
                "loss_canary": r.canary.mean, "difference": r.difference,
                "low": r.low, "high": r.high,
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


def _arm(rows: pd.DataFrame, settings: ExperimentSettings, key: str | None) -> sequential.Arm:
    threshold = rows["served_threshold"].astype(float) if "served_threshold" in rows else 0.5
    loss = pd.Series(sequential.losses(rows[OUTCOME].astype(int),
                                       rows["served_proba"].astype(float), settings.metric,
                                       threshold), index=rows.index)  # fmt: skip
    if key is not None:  # one unit per key value: its records' mean loss
        loss = loss.groupby(rows[key].astype(str)).mean()
    return sequential.Arm.of(loss.to_numpy())


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
