"""An online experiment read from the request archive and its labels: which arm answered each
labelled record, each arm's losses, and the sequential test's decision.

The service decides from it (and rolls a worse canary back), `make live` shows it, and
`make promote` takes it as evidence, so all three read the same files the same way. The arms
are compared over the time both ran: the champion's records from the first to the last
record the canary answered (records of another time have another base rate).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .metrics import sequential
from .records import KEY, OUTCOME
from .settings import ExperimentSettings

#: `served_arm` of a record: the champion's arm or the canary's.
CHAMPION_ARM, CANARY_ARM = "champion", "canary"


@dataclass(frozen=True)
class Experiment:
    """One canary version against one champion version, and where the test stands."""

    champion: str  # versions
    canary: str
    result: sequential.Sequence
    first: pd.Timestamp  # when the canary answered its first and its last record
    last: pd.Timestamp

    @property
    def decision(self) -> str:
        return self.result.decision

    def summary(self) -> dict:
        r = self.result
        return {"champion": f"v{self.champion}", "canary": f"v{self.canary}",
                "decision": r.decision, "labels_champion": r.champion.n,
                "labels_canary": r.canary.n, "loss_champion": r.champion.mean,
                "loss_canary": r.canary.mean, "difference": r.difference,
                "low": r.low, "high": r.high,
                "labels_needed": r.labels_needed}  # fmt: skip


def experiments(archive: pd.DataFrame, labels: pd.DataFrame,
                settings: ExperimentSettings) -> list[Experiment]:  # fmt: skip
    """Every canary version the archive shows answering, tested against the champion
    version that answered beside it, newest first."""
    if archive.empty or "served_arm" not in archive or labels.empty:
        return []
    canary = archive[archive["served_arm"] == CANARY_ARM]
    if canary.empty:
        return []
    rows = archive.merge(labels[[*KEY, OUTCOME]], on=KEY, how="inner")
    found = []
    for version, answered in canary.groupby(canary["served_version"].astype(str)):
        first, last = answered["received_at"].min(), answered["received_at"].max()
        during = rows[rows["received_at"].between(first, last)]
        mine = during[(during["served_arm"] == CANARY_ARM)
                      & (during["served_version"].astype(str) == version)]  # fmt: skip
        theirs = during[during["served_arm"] == CHAMPION_ARM]
        champion = theirs["served_version"].astype(str).mode()
        champion = str(champion.iloc[0]) if len(champion) else ""
        theirs = theirs[theirs["served_version"].astype(str) == champion]
        result = sequential.decide(_arm(theirs, settings), _arm(mine, settings),
                                   settings.confidence, settings.min_gain,
                                   settings.min_labels)  # fmt: skip
        found.append(Experiment(champion, version, result, first, last))
    return sorted(found, key=lambda e: e.last, reverse=True)


def _arm(rows: pd.DataFrame, settings: ExperimentSettings) -> sequential.Arm:
    threshold = rows["served_threshold"] if "served_threshold" in rows else 0.5
    return sequential.Arm.of(sequential.losses(rows[OUTCOME].astype(int),
                                               rows["served_proba"].astype(float),
                                               settings.metric, threshold))  # fmt: skip
