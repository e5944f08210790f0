"""The service's side of an online experiment (`serving.experiment`): which records the canary
answers, and its automatic rollback.

A record goes to the canary with probability `share`. With a `key`, the draw is a hash of the
key's value, the alias and the canary's version, so the same value gets the same arm for as
long as that version runs (and a new version draws afresh). A controller reads the archive's
labels every `check_seconds` and decides with the sequential test (`nbmlops.abtest`); when the
canary is worse with the stated confidence, or its p99 latency over its last answers breaks
its limit while the champion's, over the same time, did not come near it (a pause of the
whole process slows both arms alike and is no fault of the canary's), the share goes to 0 at
once, and `experiment.json` in the archive folder keeps the
rollback: a restarted service does not route to that version again (beside the same champion
for a worse canary, beside any for a slow one), and `make promote` refuses it. Promotion stays
a command.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np

from .. import abtest, storage
from ..abtest import (
    CANARY_ARM,
    CHAMPION_ARM,
    LABELS,
    LATENCY,
    STATE_FILE,
    read_rollbacks,
    rolled_back,
)
from ..metrics import sequential
from ..settings import ExperimentSettings
from .archive import release_memory

#: Canary answers the latency rule looks at, and how many it needs first.
LATENCY_WINDOW, LATENCY_MIN = 1000, 100
#: The champion's answers kept beside them (for a share as small as 5 %).
CHAMPION_WINDOW = 20 * LATENCY_WINDOW
#: A canary over its limit is rolled back when the share of its answers over the limit is
#: also more than this many times the champion's share over the same time.
SLOWER = 1.5
#: The wait counted for an answer the canary never gave (ms): over any limit, and finite, so
#: a percentile of many of them is this, not NaN.
MISSED_MS = 1e9


def draw(value, alias: str, version: str) -> float:
    """A number in [0, 1) fixed by a key's value, the alias and the version."""
    return storage.unit_hash(alias, version, value)


class Canary:
    """The share routed to the canary version, its latencies, and its state on disk."""

    def __init__(self, settings: ExperimentSettings, folder: str | Path):
        self.settings, self.folder = settings, Path(folder)
        self.version: str | None = None  # the canary version loaded; None: no experiment
        self.champion: str | None = None
        self.share = 0.0
        self.rolled_back: str | None = None  # why, when it was
        self.last: abtest.Experiment | None = None
        self._test: abtest.Running | None = None  # the experiment's test, kept up to date
        self.last_error: str | None = None
        self._ms: deque[tuple[float, float]] = deque(maxlen=LATENCY_WINDOW)  # (when, ms)
        self._champion_ms: deque[tuple[float, float]] = deque(maxlen=CHAMPION_WINDOW)
        self._lock = threading.Lock()
        self._random = random.Random()

    def follow(self, champion: str | None, canary: str | None) -> None:
        """The registry's versions now: a new canary version starts afresh, unless the state
        file says it was rolled back (for its labels beside this champion, or for its
        latency)."""
        if (champion, canary) == (self.champion, self.version):
            return
        with self._lock:
            self.champion, self.version = champion, canary
            self._ms.clear()
            self._champion_ms.clear()
            self.last, self.rolled_back, self._test = None, None, None
            if canary is not None and champion is not None:
                self._test = abtest.Running(self.folder, self.settings, champion, canary)
            if canary is not None:
                self.rolled_back = rolled_back(self.folder, champion, canary)
            on = canary is not None and champion is not None and canary != champion
            self.share = self.settings.share if on and not self.rolled_back else 0.0

    def assign(self, records: list[dict], keys: list | None = None,
               ) -> tuple[list[bool], tuple[str, str] | None]:  # fmt: skip
        """Per record, whether the canary answers it (by its key's value: the record's field,
        or `keys` when the key is not one of the models' fields); and the experiment's
        (champion, canary) versions while one runs, which the archive keeps with each
        record."""
        with self._lock:
            share, version, champion = self.share, self.version, self.champion
        if share <= 0:
            return [False] * len(records), None
        key, alias = self.settings.key, self.settings.alias
        if key is None:
            arms = [self._random.random() < share for _ in records]
        else:
            values = keys if keys is not None else [r[key] for r in records]
            arms = [draw(v, alias, version) < share for v in values]
        return arms, (champion, version)

    def waited(self, arm: str, ms: float, version: str | None = None) -> None:
        """A request's wait for the canary's answer or the champion's, by `arm` (inf: none
        within the deadline, or an error); a time of a version the experiment no longer runs
        (an answer in flight at a swap) is left out."""
        if self.share <= 0:
            return
        kept = (self._ms if arm == CANARY_ARM else self._champion_ms if arm == CHAMPION_ARM
                else None)  # fmt: skip
        if kept is None or version != (self.version if arm == CANARY_ARM else self.champion):
            return
        kept.append((time.monotonic(), ms if math.isfinite(ms) else MISSED_MS))

    def limit_ms(self, deadline_ms: float) -> float:
        return self.settings.max_p99_ms or deadline_ms

    def check_latency(self, deadline_ms: float) -> None:
        """Roll back a canary whose p99 over its last answers is over its limit, unless the
        champion, over the same time, had nearly as large a share of its answers over that
        limit (see the module's docstring)."""
        if self.share <= 0 or len(self._ms) < LATENCY_MIN:
            return
        version, champion = self.version, self.champion
        mine = list(self._ms)
        ms = np.array([m for _, m in mine])
        p99, limit = float(np.percentile(ms, 99)), self.limit_ms(deadline_ms)
        if p99 <= limit:
            return
        since = mine[0][0]
        theirs = np.array([m for at, m in list(self._champion_ms) if at >= since])
        over = float((ms > limit).mean())
        known = len(theirs) >= LATENCY_MIN
        their_over = float((theirs > limit).mean()) if known else 0.0
        if known and over <= SLOWER * their_over:
            return  # both arms slow at once: the process or the machine, not the canary
        shown = "no answer or an error" if p99 >= MISSED_MS else f"{p99:.1f} ms"
        why = (f"its p99 latency over its last {len(mine)} answers is {shown}, over its limit "
               f"of {limit:g} ms ({over:.1%} of its answers over it")  # fmt: skip
        why += f", the champion's {their_over:.1%} over the same time)" if known else ")"
        self.roll_back(why, version, champion, LATENCY)

    def check_labels(self) -> abtest.Experiment | None:
        """The test on the labels so far; a canary worse with the stated confidence is
        rolled back."""
        version, champion, test = self.version, self.champion, self._test
        if test is None or self.share <= 0:
            return self.last  # nothing is routed to it: nothing new to decide
        found = test.update()
        release_memory()
        if (version, champion) != (self.version, self.champion):
            return self.last  # the registry moved on meanwhile
        self.last = found if found.result.champion.n or found.result.canary.n else None
        if self.last is not None and self.last.decision == sequential.WORSE:
            r = self.last.result
            self.roll_back(f"it is worse on {r.canary.n:,} + {r.champion.n:,} labels: its loss "
                           f"is higher by {-r.difference:.4f} (between {-r.high:.4f} and "
                           f"{-r.low:.4f} at {self.settings.confidence:.0%} confidence)",
                           version, champion, LABELS)  # fmt: skip
        return self.last

    def roll_back(self, why: str, version: str | None, champion: str | None, kind: str) -> None:
        """Share 0 for `version` beside `champion`, kept on disk; nothing when the registry
        has moved on since the check that asks for it."""
        with self._lock:
            if self.share <= 0 or (version, champion) != (self.version, self.champion):
                return
            self.share = 0.0
            self.rolled_back = why
            try:
                kept = read_rollbacks(self.folder)
            except (OSError, ValueError):  # unreadable: replaced by what is known now
                kept = []
            kept.append({"canary": version, "champion": champion, "kind": kind, "why": why,
                         "at": time.time()})  # fmt: skip
            storage.write_json(self.folder / STATE_FILE, {"rollbacks": kept})
        print(f"canary v{version} rolled back: {why}", flush=True)

    def describe(self) -> dict:
        out = {"alias": self.settings.alias, "canary": self.version, "champion": self.champion,
               "share": self.share, "declared_share": self.settings.share,
               "key": self.settings.key, "rolled_back": self.rolled_back,
               "error": self.last_error}  # fmt: skip
        return out | ({"test": self.last.summary()} if self.last else {})
