"""The rendezvous core of the scoring service: who answers, who stands by, who scores in shadow.

The champion answers within a latency budget. When it errors or runs over, the fallback (the
previous champion) answers instead, and the answer says so. After several champion failures in a
row a breaker opens: the fallback answers at once, and after a cool-down one request tries the
champion again. A watcher follows the registry's aliases and swaps the set of models in place:
requests in flight finish on the set they started with, new ones get the new set, nothing
restarts and no request fails.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from queue import Empty, SimpleQueue

import numpy as np
import pandas as pd
import sklearn

from ..calibration import threshold_of
from ..registry import versions
from ..registry.compiled import Compiled, agrees
from ..registry.loading import load_serving
from ..registry.store import Store
from ..spec import THRESHOLD
from .fused import fuse

CHAMPION, FALLBACK, ACTING, CANARY = "champion", "fallback", "acting champion", "canary"
#: The cause of an answer the canary was to give and the champion (or the fallback) gave: the
#: canary had none in time, or failed. The record stays in the canary's arm, with the answer
#: its user got (the test compares what each arm's users got, misses included).
CANARY_MISSED = "canary missed"
#: Why the fallback answered (a metric label; the answer's reason adds the detail).
OVER_BUDGET, ERROR = "over budget", "error"
BREAKER_OPEN = "breaker open after repeated champion failures"


class NoModel(Exception):
    """No model can answer: the champion failed and there is no fallback, or none is loaded."""


@dataclass(frozen=True)
class Loaded:
    version: str
    model: object
    form: str = "pipeline"  # compiled (kernel), fused or pipeline: what answers
    note: str = ""  # why the compiled form does not answer
    threshold: float = THRESHOLD  # the decision threshold chosen with the model


@dataclass(frozen=True)
class ModelSet:
    """One consistent view of the registry: replaced whole, never changed in place."""

    answering: Loaded
    role: str  # champion, or acting champion (the challenger, before any promotion)
    fallback: Loaded | None
    shadows: dict[str, Loaded] = field(default_factory=dict)  # alias -> version scored beside
    generation: int = 0
    canary: Loaded | None = None  # answers the experiment's share (serving.experiment)

    def versions(self) -> dict[str, str | None]:
        found = {self.role: self.answering.version,
                 FALLBACK: self.fallback.version if self.fallback else None}  # fmt: skip
        found |= {CANARY: self.canary.version} if self.canary else {}
        return found | {alias: m.version for alias, m in self.shadows.items()}

    def forms(self) -> dict[str, dict[str, str]]:
        """Per loaded version, the form that scores it and, when not compiled, why."""
        loaded = [self.answering, self.fallback, self.canary, *self.shadows.values()]
        return {m.version: {"form": m.form} | ({"why_not_compiled": m.note} if m.note else {})
                for m in loaded if m is not None}  # fmt: skip


@dataclass
class Answer:
    proba: np.ndarray
    version: str
    role: str
    model_ms: float  # time of the model that answered
    reason: str | None = None  # why the fallback answered, in words
    cause: str | None = None  # the same, one of OVER_BUDGET, ERROR, BREAKER_OPEN
    shadows: dict[str, str] = field(default_factory=dict)  # alias -> version, for the archive
    batch_rows: int = 1  # rows of the model call that answered (requests scored together)
    threshold: float = THRESHOLD  # the answering model's decision threshold
    arm: str = CHAMPION  # the experiment's arm: the champion's, or the canary's


class Breaker:
    """Closed: the champion is asked. Open after `threshold` failures in a row: it is skipped.

    After `cooldown` seconds one request tries it again (half-open); success closes the breaker.
    """

    def __init__(self, threshold: int = 5, cooldown: float = 5.0, clock=time.monotonic):
        self.threshold, self.cooldown, self.clock = threshold, cooldown, clock
        self.failures = 0
        self.opened_at: float | None = None
        self._trial = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self._trial else "open"

    def allow(self) -> bool:
        with self._lock:
            if self.opened_at is None:
                return True
            if not self._trial and self.clock() - self.opened_at >= self.cooldown:
                self._trial = True
                return True
            return False

    def record(self, ok: bool) -> None:
        with self._lock:
            if ok:
                self.failures, self.opened_at, self._trial = 0, None, False
                return
            self.failures += 1
            if self._trial or self.failures >= self.threshold:
                self.opened_at, self._trial = self.clock(), False


@dataclass
class _Job:
    model: object
    records: list[dict]
    delay: float
    future: Future = field(default_factory=Future)


class Overloaded(RuntimeError):
    """More records wait for a model than it may queue: the request is shed."""


class Batcher:
    """A thread that scores every request waiting for it in one call.

    A scikit-learn pipeline costs about as much for fifty rows as for one, so under load a
    batch of many answers costs what one would; with no load a batch is one request.
    Requests whose caller has given up (over budget) are dropped before scoring.
    """

    def __init__(self, name: str, to_frame: Callable[[list[dict]], pd.DataFrame],
                 max_rows: int = 512, max_waiting: int = 4096):  # fmt: skip
        self.to_frame, self.max_rows, self.max_waiting = to_frame, max_rows, max_waiting
        self._queue: SimpleQueue[_Job | None] = SimpleQueue()
        self._waiting = 0  # records queued and not yet taken
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, model, records: list[dict], delay: float = 0.0) -> Future:
        """Queue records for the next call; Overloaded when `max_waiting` records wait already."""
        with self._lock:
            if self._waiting + len(records) > self.max_waiting:
                raise Overloaded(f"{self._waiting} records are waiting for this model")
            self._waiting += len(records)
        job = _Job(model, records, delay)
        self._queue.put(job)
        return job.future

    def _taken(self, jobs: list[_Job]) -> None:
        with self._lock:
            self._waiting -= sum(len(j.records) for j in jobs)

    def close(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            jobs, rows, stop = [first], len(first.records), False
            while rows < self.max_rows:
                try:
                    job = self._queue.get_nowait()
                except Empty:
                    break
                if job is None:
                    stop = True
                    break
                jobs.append(job)
                rows += len(job.records)
            self._taken(jobs)
            live = [j for j in jobs if j.future.set_running_or_notify_cancel()]
            for model_id in dict.fromkeys(id(j.model) for j in live):  # a swap mid-batch: two
                self._score([j for j in live if id(j.model) == model_id])
            if stop:
                return

    def _score(self, jobs: list[_Job]) -> None:
        records = [r for j in jobs for r in j.records]
        start = time.perf_counter()
        try:
            delay = max(j.delay for j in jobs)
            if delay:
                time.sleep(delay)  # a drill: latency injected into the champion
            proba = score_records(jobs[0].model, records, self.to_frame)
        except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch
            for j in jobs:
                j.future.set_exception(exc)
            return
        ms = (time.perf_counter() - start) * 1000
        i = 0
        for j in jobs:
            j.future.set_result((proba[i : i + len(j.records)], ms, len(records)))
            i += len(j.records)


class Router:
    """Answers checked records with the champion, or with the fallback within the budget."""

    def __init__(self, to_frame: Callable[[list[dict]], pd.DataFrame], columns: list[str],
                 budget_ms: float, reserve_ms: float, breaker: Breaker | None = None,
                 champion_delay_ms: float = 0.0, fallback_deadline_ms: float = 1000.0,
                 canary_delay_ms: float = 0.0,
                 on_wait: Callable[[str, float, str], None] = lambda arm, ms, version: None,
                 ):  # fmt: skip
        if reserve_ms >= budget_ms:
            raise ValueError(f"fallback_reserve_ms ({reserve_ms}) must be below "
                             f"latency_budget_ms ({budget_ms})")  # fmt: skip
        self.columns = columns
        self.fallback_deadline = fallback_deadline_ms / 1000
        self.deadline = (budget_ms - reserve_ms) / 1000  # the champion's share of the budget
        self.breaker = breaker or Breaker()
        self.delay = champion_delay_ms / 1000
        self.canary_delay = canary_delay_ms / 1000  # a drill of a slow canary
        self.models: ModelSet | None = None
        # each wait of a request of the experiment's arms for its model's answer (inf: none
        # in time), by arm (CANARY, CHAMPION), with the version that kept it waiting
        self.on_wait = on_wait
        self._champion = Batcher("champion", to_frame)
        self._fallback = Batcher("fallback", to_frame)
        self._canary = Batcher("canary", to_frame)

    def swap(self, models: ModelSet) -> None:
        self.models = models  # one reference assignment: readers see the old set or the new one

    async def answer(self, records: list[dict], canary: bool = False) -> Answer:
        """The records' answer: the canary's when `canary` and one is loaded (the champion's
        within the rest of the budget when it has none in the champion's deadline), else the
        champion's or the fallback's."""
        models = self.models  # this request's view, whatever the watcher does meanwhile
        if models is None:
            raise NoModel("no model is loaded yet")
        shadows = {alias: m.version for alias, m in models.shadows.items()}
        if canary and models.canary is not None:
            found = await self._ask_canary(models.canary, records)
            if found is not None:
                proba, ms, rows = found
                return Answer(proba, models.canary.version, CANARY, ms, shadows=shadows,
                              batch_rows=rows, threshold=models.canary.threshold,
                              arm=CANARY)  # fmt: skip
            answer = await self._stand_in(models, records, shadows)
            answer.arm = CANARY
            return answer
        cause = reason = BREAKER_OPEN
        # Without a fallback there is nothing to answer in the champion's place: wait for it.
        deadline = self.deadline if models.fallback is not None else None
        if models.fallback is None or self.breaker.allow():
            delay = self.delay if models.role == CHAMPION else 0.0
            start = time.perf_counter()
            try:
                job = self._champion.submit(models.answering.model, records, delay)
                proba, ms, rows = await asyncio.wait_for(asyncio.wrap_future(job), deadline)
                self.on_wait(CHAMPION, (time.perf_counter() - start) * 1000,
                             models.answering.version)  # fmt: skip
                self.breaker.record(True)
                return Answer(proba, models.answering.version, models.role, ms,
                              shadows=shadows, batch_rows=rows,
                              threshold=models.answering.threshold)  # fmt: skip
            except TimeoutError:
                self.on_wait(CHAMPION, float("inf"), models.answering.version)
                cause = OVER_BUDGET
                reason = f"{cause} (no answer in {self.deadline * 1000:.0f} ms)"
            except Exception as exc:  # noqa: BLE001 - any champion failure falls back
                # the answer names the kind of failure; its text (paths, data) goes to the log
                cause, reason = ERROR, f"{ERROR}: {type(exc).__name__}"
                print(f"champion v{models.answering.version} failed: {type(exc).__name__}: "
                      f"{exc}", file=sys.stderr, flush=True)  # fmt: skip
            self.breaker.record(False)
        if models.fallback is None:
            raise NoModel(f"v{models.answering.version} failed ({reason}) and no earlier "
                          "champion is registered as fallback")  # fmt: skip
        return await self._fallback_answer(models.fallback, records, shadows, reason, cause,
                                           f"the champion {reason}")  # fmt: skip

    async def _ask_canary(self, canary: Loaded, records: list[dict]):
        """The canary's (proba, ms, rows) within the champion's deadline, or None."""
        start = time.perf_counter()
        try:
            job = self._canary.submit(canary.model, records, self.canary_delay)
            found = await asyncio.wait_for(asyncio.wrap_future(job), self.deadline)
        except Exception as exc:  # noqa: BLE001 - a canary's failure is the champion's to answer
            if not isinstance(exc, TimeoutError):
                print(f"canary v{canary.version} failed: {type(exc).__name__}: {exc}",
                      file=sys.stderr, flush=True)  # fmt: skip
            self.on_wait(CANARY, float("inf"), canary.version)
            return None
        self.on_wait(CANARY, (time.perf_counter() - start) * 1000, canary.version)
        return found

    async def _stand_in(self, models: ModelSet, records: list[dict], shadows: dict) -> Answer:
        """The champion's answer for the canary's (not counted by the breaker: the champion
        did not fail), or the fallback's when the champion fails too."""
        reason = "the canary had no answer in time or failed"
        try:
            job = self._champion.submit(models.answering.model, records)
            proba, ms, rows = await asyncio.wait_for(asyncio.wrap_future(job),
                                                     self.fallback_deadline)  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - the fallback answers in the champion's place
            if models.fallback is None:
                raise NoModel(f"{reason}, and the champion v{models.answering.version} too "
                              f"({type(exc).__name__}); no earlier champion is registered as "
                              "fallback") from None  # fmt: skip
            why = f"{reason}, and the champion too ({type(exc).__name__})"
            return await self._fallback_answer(models.fallback, records, shadows, why, ERROR,
                                               why)  # fmt: skip
        return Answer(proba, models.answering.version, models.role, ms, reason, CANARY_MISSED,
                      shadows, rows, models.answering.threshold)  # fmt: skip

    async def _fallback_answer(self, fallback: Loaded, records: list[dict], shadows: dict,
                               reason: str, cause: str, what_failed: str) -> Answer:  # fmt: skip
        """The fallback's answer, within its own deadline: a hung fallback is not waited on."""
        try:
            job = self._fallback.submit(fallback.model, records)
            proba, ms, rows = await asyncio.wait_for(asyncio.wrap_future(job),
                                                     self.fallback_deadline)  # fmt: skip
        except Overloaded as exc:
            raise NoModel(f"overloaded: {exc}; try again shortly") from None
        except TimeoutError:
            raise NoModel(f"no answer: {what_failed}, and the fallback v{fallback.version} had "
                          f"none within its deadline of {self.fallback_deadline * 1000:.0f} "
                          "ms") from None  # fmt: skip
        return Answer(proba, fallback.version, FALLBACK, ms, reason, cause, shadows, rows,
                      fallback.threshold)  # fmt: skip

    def close(self) -> None:
        self._champion.close()
        self._fallback.close()
        self._canary.close()


def score_records(model, records: list[dict], to_frame: Callable) -> np.ndarray:
    """The positive class's probability of each request record: straight from the records for
    a compiled form, else through the frame `to_frame` makes of them."""
    if isinstance(model, Compiled):
        return model.predict_records(records)[:, 1]
    # Records were checked on the way in (finite numbers, known fields), and the model's
    # parameters when it was fitted: skip scikit-learn's checks of both.
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        return model.predict_proba(to_frame(records))[:, 1]


def check_rows(columns: list[str], frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows every loaded model scores once before it serves: a row of missing values, plus
    `frame` (sample records) when given."""
    empty = pd.DataFrame({c: np.array([np.nan], dtype=object) for c in columns})
    if frame is None or frame.empty:
        return empty
    return pd.concat([frame[columns], empty.astype(frame[columns].dtypes.to_dict())],
                     ignore_index=True)  # fmt: skip


class ModelCache:
    """Loaded versions by number (hash-checked by the registry), the most recent `size` kept.

    Each model scores `sample` once when loaded, so the first real request is not the slow one.
    It then answers in its compiled form (nbmlops.registry.compiled) when that gives its
    probabilities on `sample` within the compiled form's tolerance; else fused
    (nbmlops.serving.fused) where that gives the very same probabilities; else as it is.
    """

    def __init__(self, store: Store, sample: pd.DataFrame, size: int = 8):
        self.store, self.sample, self.size = store, sample, size
        self._models: OrderedDict[str, Loaded] = OrderedDict()

    def get(self, version: str) -> Loaded:
        if version not in self._models:
            model, compiled, note = load_serving(self.store, version)
            self._models[version] = serving_form(version, model, compiled, note, self.sample)
            while len(self._models) > self.size:
                self._models.popitem(last=False)
        self._models.move_to_end(version)
        return self._models[version]


def serving_form(
    version: str, model, compiled: Compiled | None, note: str, sample: pd.DataFrame
) -> Loaded:
    """The fastest form of `model` that answers as it does on `sample` (see ModelCache)."""
    model.predict_proba(sample)
    threshold = threshold_of(model)
    if compiled is not None:
        ok, note = agrees(compiled, model, sample)  # scoring `sample` both ways warms it up too
        if ok:
            return Loaded(version, compiled, f"compiled ({compiled.kernel})", "", threshold)
    fast = fuse(model, sample)
    return Loaded(version, fast, "fused" if fast is not model else "pipeline", note, threshold)


def wanted(aliases: dict[str, str], history: list[str], shadow_aliases: list[str]):
    """(answering version, role, fallback version, {shadow alias: version}) from the registry."""
    champion = aliases.get(versions.CHAMPION)
    if champion is None:
        answering, role = aliases.get(versions.CHALLENGER), ACTING
    else:
        answering, role = champion, CHAMPION
    earlier = [v for v in reversed(history) if v != champion] if champion else []
    shadows = {a: aliases[a] for a in shadow_aliases if a in aliases}
    return answering, role, earlier[0] if earlier else None, shadows


class Watcher(threading.Thread):
    """Follows the registry's aliases; loads new versions off the answer path, then swaps."""

    def __init__(self, store: Store, router: Router, shadow_aliases: list[str],
                 poll_seconds: float, on_swap: Callable[[ModelSet], None] = lambda m: None,
                 on_error: Callable[[str], None] = lambda e: None,
                 sample: pd.DataFrame | None = None, canary_alias: str | None = None):  # fmt: skip
        super().__init__(name="registry-watcher", daemon=True)
        self.store, self.router, self.poll = store, router, poll_seconds
        self.shadow_aliases, self.canary_alias = shadow_aliases, canary_alias
        self.cache = ModelCache(store, check_rows(router.columns, sample))
        self.on_swap, self.on_error = on_swap, on_error
        self.key: tuple | None = None
        self.swaps = 0
        self.last_error: str | None = None
        self.last_poll: float | None = None  # when the registry last answered (time.time)
        self._asking_since: float | None = None  # a look in flight (time.monotonic)
        self._answered_at: float | None = None  # its last answer (time.monotonic)
        self.registry_error: str | None = None  # why its last look got no answer
        self._stop = threading.Event()
        self._client = None

    def check(self) -> bool:
        """One look at the registry; True when the served set changed."""
        try:
            self._client = self._client or self.store.client()
            found = self._client.get_registered_model(self.store.model_name)
        except Exception as exc:
            self.registry_error = f"{type(exc).__name__}: {exc}"
            raise
        # it answered: loading a new version (seconds, off the answer path) is not a wait on it
        self.registry_error, self._answered_at = None, time.monotonic()
        self._asking_since = None
        history = json.loads(found.tags.get(versions.HISTORY_TAG, "[]"))
        aliases = {alias: str(version) for alias, version in found.aliases.items()}
        answering, role, fallback, shadows = wanted(aliases, [str(v) for v in history],
                                                    self.shadow_aliases)  # fmt: skip
        self.last_poll = time.time()
        # a canary only beside a champion, and never the champion itself
        canary = aliases.get(self.canary_alias) if role == CHAMPION and self.canary_alias else None
        canary = canary if canary != answering else None
        key = (answering, role, fallback, tuple(sorted(shadows.items())), canary)
        if key == self.key:
            return False
        if answering is None:
            raise NoModel(f"model {self.store.model_name!r} has neither a champion nor a "
                          "challenger; run a build first")  # fmt: skip
        models = ModelSet(
            self.cache.get(answering), role,
            self.cache.get(fallback) if fallback else None,
            {alias: self.cache.get(v) for alias, v in shadows.items()},
            generation=self.swaps + 1,
            canary=self.cache.get(canary) if canary else None,
        )  # fmt: skip
        self.router.swap(models)
        self.key, self.swaps = key, self.swaps + 1
        self.on_swap(models)
        return True

    def run(self) -> None:
        while not self._stop.is_set():
            self._asking_since = time.monotonic()
            try:
                self.check()
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - keep serving the current set; retry
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.on_error(self.last_error)
            self._asking_since = None
            self._stop.wait(self.poll)

    def unreachable(self) -> str | None:
        """Why the registry counts as unreachable, or None: its last look failed, or a look
        has had no answer for `max(5 s, 3 polls)` (a registry that hangs)."""
        patience = max(5.0, 3 * self.poll)
        asking = self._asking_since
        if asking is not None and time.monotonic() - asking > patience:
            return f"no answer from the registry for {time.monotonic() - asking:.0f} s"
        error = self.registry_error
        if error is not None:
            since = (f" for {time.monotonic() - self._answered_at:.0f} s"
                     if self._answered_at is not None else "")  # fmt: skip
            return f"no answer from the registry{since} ({error.splitlines()[0][:200]})"
        return None

    def stop(self) -> None:
        self._stop.set()
