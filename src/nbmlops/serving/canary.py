"""The service's side of an online experiment (`serving.experiment`): which records the canary
answers, and its automatic rollback.

A record goes to the canary with probability `share`. With a `key`, the draw is a hash of the
key's value, the alias and the canary's version, so the same value gets the same arm for as
long as that version runs (and a new version draws afresh). A controller reads the archive's
labels every `check_seconds` and decides with the sequential test (`nbmlops.abtest`); when the
canary is worse with the stated confidence, or its p99 latency over its last answers breaks
its limit, the share goes to 0 at once, and `experiment.json` in the archive folder keeps the
rollback, so a restarted service does not route to that version again. Promotion stays a
command (`make promote`).
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np

from .. import abtest, storage
from ..metrics import sequential
from ..records import read_archive, read_labels
from ..settings import ExperimentSettings

STATE_FILE = "experiment.json"
#: Canary answers the latency rule looks at, and how many it needs first.
LATENCY_WINDOW, LATENCY_MIN = 1000, 100
#: The archive's columns the controller reads.
COLUMNS = ["request_id", "record", "received_at", "served_arm", "served_version",
           "served_proba", "served_threshold"]  # fmt: skip


def draw(value, alias: str, version: str) -> float:
    """A number in [0, 1) fixed by a key's value, the alias and the version."""
    digest = hashlib.blake2b(f"{alias}\0{version}\0{value}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class Canary:
    """The share routed to the canary version, its latencies, and its state on disk."""

    def __init__(self, settings: ExperimentSettings, folder: str | Path):
        self.settings, self.folder = settings, Path(folder)
        self.version: str | None = None  # the canary version loaded; None: no experiment
        self.champion: str | None = None
        self.share = 0.0
        self.rolled_back: str | None = None  # why, when it was
        self.last: abtest.Experiment | None = None
        self.last_error: str | None = None
        self._ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._lock = threading.Lock()
        self._random = random.Random()

    def follow(self, champion: str | None, canary: str | None) -> None:
        """The registry's versions now: a new canary version starts afresh, unless the state
        file says it was rolled back against this champion."""
        if (champion, canary) == (self.champion, self.version):
            return
        with self._lock:
            self.champion, self.version = champion, canary
            self._ms.clear()
            self.last, self.rolled_back = None, None
            state = storage.read_json(self.folder / STATE_FILE) if self._state_exists() else {}
            same = state.get("canary") == canary and state.get("champion") == champion
            if same and state.get("rolled_back"):
                self.rolled_back = state["rolled_back"]
            on = canary is not None and champion is not None and canary != champion
            self.share = self.settings.share if on and not self.rolled_back else 0.0

    def _state_exists(self) -> bool:
        return (self.folder / STATE_FILE).is_file()

    def arms(self, records: list[dict]) -> list[bool]:
        """Per record, whether the canary answers it."""
        share = self.share
        if share <= 0:
            return [False] * len(records)
        key, alias, version = self.settings.key, self.settings.alias, self.version
        if key is None:
            return [self._random.random() < share for _ in records]
        return [draw(r.get(key), alias, version) < share for r in records]

    def answered(self, ms: float) -> None:
        """The canary's time for an answer (inf: none within its deadline, or an error)."""
        self._ms.append(ms)

    def limit_ms(self, deadline_ms: float) -> float:
        return self.settings.max_p99_ms or deadline_ms

    def check_latency(self, deadline_ms: float) -> None:
        if self.share <= 0 or len(self._ms) < LATENCY_MIN:
            return
        p99 = float(np.percentile(np.asarray(self._ms), 99))
        limit = self.limit_ms(deadline_ms)
        if p99 > limit:
            shown = "no answer" if p99 == float("inf") else f"{p99:.1f} ms"
            self.roll_back(f"its p99 latency over its last {len(self._ms)} answers is {shown}, "
                           f"over its limit of {limit:g} ms")  # fmt: skip

    def check_labels(self) -> abtest.Experiment | None:
        """The test on the labels so far; a canary worse with the stated confidence is
        rolled back."""
        version, champion = self.version, self.champion
        if version is None or champion is None:
            return None
        labels, _ = read_labels(self.folder)
        archive = read_archive(self.folder, COLUMNS)
        found = [e for e in abtest.experiments(archive, labels, self.settings)
                 if e.canary == version and e.champion == champion]  # fmt: skip
        self.last = found[0] if found else None
        if self.last is not None and self.last.decision == sequential.WORSE and self.share > 0:
            r = self.last.result
            self.roll_back(f"it is worse on {r.canary.n:,} + {r.champion.n:,} labels: loss "
                           f"difference {r.difference:+.4f} [{r.low:+.4f}, {r.high:+.4f}] at "
                           f"{self.settings.confidence:.0%} confidence")  # fmt: skip
        return self.last

    def roll_back(self, why: str) -> None:
        with self._lock:
            if self.share <= 0:
                return
            self.share = 0.0
            self.rolled_back = why
            storage.write_json(self.folder / STATE_FILE, {
                "canary": self.version, "champion": self.champion, "rolled_back": why,
                "at": time.time()})  # fmt: skip
        print(f"canary v{self.version} rolled back: {why}", flush=True)

    def describe(self) -> dict:
        out = {"alias": self.settings.alias, "canary": self.version, "champion": self.champion,
               "share": self.share, "declared_share": self.settings.share,
               "key": self.settings.key, "rolled_back": self.rolled_back,
               "error": self.last_error}  # fmt: skip
        return out | ({"test": self.last.summary()} if self.last else {})
