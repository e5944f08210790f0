"""The backtest's training: every candidate fitted on a window of labelled periods, in worker
processes, and the best kept as its scores.

A window's candidates are fitted with the pipeline's own code and judged on the window's
held-out periods; the best also scores every later row once, when it is trained, so that what
a policy reads of it later was computed before its cut-off. A window two policies share is
trained once.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import calibration
from ..errors import ConfigError, DataError, Problem
from ..metrics.scores import classification_metrics, predict_proba
from ..settings import CalibrationSettings
from ..spec import BATCH, CONTROL, PERIOD, FeatureSpec
from . import candidates


@dataclass(frozen=True)
class Periods:
    """Every labelled row in period order; period `i` is rows `bounds[i]:bounds[i + 1]`."""

    data: pd.DataFrame
    names: list[str]
    bounds: np.ndarray

    @classmethod
    def from_windows(cls, train: pd.DataFrame, holdout: pd.DataFrame, batches: pd.DataFrame,
                     spec: FeatureSpec) -> tuple[Periods, list[str]]:  # fmt: skip
        """The build's windows as one sequence of labelled periods (control batches left out);
        also the batches left out for want of labels."""
        real = batches[batches[CONTROL] == ""]
        labelled = real.groupby(BATCH, sort=False)[spec.target].transform(lambda y: y.notna().all())
        skipped = list(dict.fromkeys(real.loc[~labelled.astype(bool), BATCH].astype(str)))
        later = real[labelled.astype(bool)].assign(**{PERIOD: lambda d: d[BATCH]})
        frames = [train, holdout, later]
        data = pd.concat([f[spec.stored_columns + [spec.target, PERIOD]] for f in frames],
                         ignore_index=True)  # fmt: skip
        data[spec.target] = data[spec.target].astype("int8")
        data[PERIOD] = data[PERIOD].astype(str)
        names = list(dict.fromkeys(data[PERIOD]))
        order = pd.Categorical(data[PERIOD], categories=names, ordered=True)
        if not (np.diff(order.codes) >= 0).all():
            raise DataError(Problem(PERIOD, None, "the windows' periods are not in time order"))
        counts = np.bincount(order.codes, minlength=len(names))
        return cls(data, names, np.concatenate([[0], np.cumsum(counts)])), skipped

    def rows(self, first: int, last: int) -> slice:
        """Rows of periods `first` to `last - 1`."""
        return slice(int(self.bounds[first]), int(self.bounds[last]))

    def frame(self, first: int, last: int) -> pd.DataFrame:
        return self.data.iloc[self.rows(first, last)]

    def span(self, first: int, last: int) -> str:
        names = self.names[first:last]
        return names[0] if len(names) == 1 else f"{names[0]} … {names[-1]}"


@dataclass(frozen=True)
class Model:
    """A model trained at cut-off `cutoff` on periods `start` to `cutoff - held_out - 1`: the
    best candidate on its held-out periods, and its scores of every row from them on."""

    key: str
    start: int
    cutoff: int
    held_out: int
    candidate: str
    candidates: dict[str, dict]  # held-out metrics and fit seconds of each candidate
    fit_seconds: float  # every candidate's fit
    offset: int  # the row proba[0] scores
    proba: np.ndarray
    threshold: float  # its decision threshold, chosen with it

    def scores(self, periods: Periods, first: int, last: int) -> np.ndarray:
        rows = periods.rows(first, last)
        if rows.start < self.offset:
            raise ValueError(f"{self.key} has no scores before its held-out periods")
        return self.proba[rows.start - self.offset : rows.stop - self.offset]


#: What the worker processes share, set before they fork (nothing is pickled to reach them).
_SHARED: dict = {}


def _fit_window(start: int, cutoff: int) -> dict:
    """Every candidate fitted on the window and scored on its held-out periods; the best of
    them by the selection metric (the build's choice) also scores every later row, which a
    policy may serve it (the others' later scores would never be read). Returns per
    candidate its seconds, held-out scores (or why it could not be trained) and threshold,
    the best's name and its scores of every row from the held-out periods on."""
    from threadpoolctl import threadpool_limits

    periods, spec = _SHARED["periods"], _SHARED["spec"]
    held_out, seed = _SHARED["held_out"], _SHARED["seed"]
    first = cutoff - held_out
    train, held = periods.frame(start, first), periods.frame(first, cutoff)
    found, fitted, scores, table = {}, {}, None, {}
    with threadpool_limits(_SHARED["threads"]):
        for name, declared in _SHARED["declared"].items():
            pipeline = candidates.build(declared, spec, seed)
            try:
                pipeline, seconds, _ = candidates.fit_calibrated(
                    pipeline, train, spec, _SHARED["calibration"]
                )
                found[name] = (seconds, predict_proba(pipeline, held, spec),
                               calibration.threshold_of(pipeline))  # fmt: skip
                fitted[name] = pipeline
            except (ValueError, ConfigError) as exc:  # e.g. one class in the window
                why = f"{name} could not be trained on {periods.span(start, first)}: {exc}"
                found[name] = (0.0, why, math.nan)
        later = periods.data.iloc[periods.rows(cutoff, len(periods.names))]
        while (best := _choose(table := _held_out(found, held[spec.target]),
                               _SHARED["selection_metric"])) and scores is None:  # fmt: skip
            try:
                ahead = predict_proba(fitted[best], later, spec)
                scores = np.concatenate([found[best][1], ahead])
            except (ValueError, ConfigError) as exc:  # the next best, then
                why = f"{best} could not score {periods.span(cutoff, len(periods.names))}: {exc}"
                found[best] = (found[best][0], why, math.nan)
    return {"candidates": found, "metrics": table, "best": best, "scores": scores}


def _held_out(found: dict, y: pd.Series) -> dict[str, dict]:
    """Each trained candidate's metrics on the held-out rows, at its own threshold."""
    return {n: classification_metrics(y, p, at)
            for n, (_, p, at) in found.items() if not isinstance(p, str)}  # fmt: skip


def _choose(table: dict[str, dict], selection_metric: str) -> str | None:
    """The candidate the selection metric picks (None: none trained)."""
    return str(candidates.compare(table, selection_metric)["model"].iloc[0]) if table else None


class Trainer:
    """Trains every candidate on a window once (a window two policies share is trained once),
    in `workers` processes, a window's candidates in one; keeps the best model's scores, not
    the model.

    Training runs in the background: `submit` starts windows (those of the earliest cut-off
    first, the larger first), `get` waits for one. A window started on a
    guess and never asked for changes nothing but the time spent."""

    def __init__(self, periods: Periods, spec: FeatureSpec, declared: list[dict],
                 seed: int, held_out: int, selection_metric: str, workers: int = 1,
                 calibration: CalibrationSettings | None = None):  # fmt: skip
        self.periods, self.spec = periods, spec
        self.names = [candidate["name"] for candidate in declared]
        self.held_out, self.workers = held_out, workers
        self.models: dict[tuple[int, int], Model | str] = {}
        self._running: dict[tuple[int, int], Future | dict] = {}
        self.fits, self.seconds, self.fit_seconds = 0, 0.0, 0.0
        _SHARED.update(periods=periods, spec=spec, seed=seed, selection_metric=selection_metric,
                       declared={candidate["name"]: candidate for candidate in declared},
                       calibration=calibration or CalibrationSettings(),
                       held_out=held_out, threads=1 if workers > 1 else None)  # fmt: skip
        self._pool = None
        if workers > 1:
            self._pool = ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("fork")
            )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def _rows(self, window: tuple[int, int]) -> int:
        start, cutoff = window
        return int(self.periods.bounds[cutoff - self.held_out] - self.periods.bounds[start])

    def submit(self, windows: list[tuple[int, int] | None], guess: bool = False) -> None:
        """Start training the windows (start, cut-off) not trained or started yet; windows
        only `guess`ed to be needed wait for a worker process (none: nothing is started)."""
        if guess and self._pool is None:
            return
        wanted = [w for w in dict.fromkeys(windows)
                  if w is not None and w not in self.models and w not in self._running]  # fmt: skip
        for w in sorted(wanted, key=lambda w: (w[1], -self._rows(w))):  # earliest, then largest
            if self._pool is None:  # at once, in this process: waited for now
                started = time.perf_counter()
                self._running[w] = _fit_window(*w)
                self.seconds += time.perf_counter() - started
            else:
                self._running[w] = self._pool.submit(_fit_window, *w)

    @property
    def unused(self) -> int:
        """Windows started on a guess and never asked for (so far)."""
        return len(self._running)

    def get(self, window: tuple[int, int]) -> Model | str:
        """The model trained on `window` (trained now, or waited for), or why none could be."""
        if window not in self.models:
            self.submit([window])
            waited = time.perf_counter()
            job = self._running.pop(window)
            result = job if isinstance(job, dict) else job.result()
            self.seconds += time.perf_counter() - waited
            seconds = sum(found[0] for found in result["candidates"].values())
            self.fits += len(result["candidates"])
            self.fit_seconds += seconds
            self.models[window] = self._model(window, result)
        return self.models[window]

    def _model(self, window: tuple[int, int], result: dict) -> Model | str:
        start, cutoff = window
        first = cutoff - self.held_out
        found, best = result["candidates"], result["best"]
        if best is None:
            return "; ".join(why for _, why, _ in found.values())
        fitted = {n: r for n, r in found.items() if not isinstance(r[1], str)}
        return Model(
            key=self.periods.span(start, first).replace(" … ", "…"),
            start=start, cutoff=cutoff, held_out=self.held_out, candidate=best,
            candidates={n: result["metrics"][n] | {"fit_seconds": fitted[n][0]}
                        for n in fitted},
            fit_seconds=float(sum(r[0] for r in fitted.values())),
            offset=int(self.periods.bounds[first]), proba=result["scores"],
            threshold=found[best][2],
        )  # fmt: skip


def default_workers() -> int:
    return max(1, min(4, len(os.sched_getaffinity(0))))
