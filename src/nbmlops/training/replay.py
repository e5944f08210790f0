"""Retraining policies replayed over the labelled periods, as if they were lived.

At each cut-off only the rows of earlier periods exist. Every policy starts from the model the
pipeline trains (the first periods, judged on the held-out ones). At each cut-off a policy
may retrain: the candidates train on its window with the pipeline's own code (in parallel),
the best on the held-out periods must pass the gates against the champion on those periods,
then it scores the next periods in shadow and is promoted only when the gates pass on the
rows it shadowed. The model that serves a period is judged on it as the monitor judges a
batch (drift, performance, calibration), and that verdict may trigger the next retraining.

Nothing a decision reads comes from its cut-off's period or later: a model's scores of later
rows are computed once, when it is trained, and read only when that period is served.

With a label delay of N periods, a period's labels are known N periods after it was served:
a model trains on the periods labelled by its cut-off, a shadow is judged once its shadowed
periods' labels are in, and until then a trigger reads the monitor's verdict before labels
(drift, unseen values and the performance estimated from the probabilities).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError, Problem
from ..metrics import intervals
from ..metrics.scores import scored_frame
from ..monitoring import drift, estimate, monitor, stream, verdict
from ..monitoring.rules import MonitorRules
from ..registry import gates as gate_rules
from ..registry import promotion
from ..registry.evidence import Evidence, compare
from ..settings import RetrainPolicy
from ..spec import FeatureSpec
from .trainer import Model, Periods, Trainer


@dataclass
class Replay:
    """One policy's state as the periods are lived, its labels `delay` periods late."""

    name: str
    policy: RetrainPolicy
    champion: Model | None  # None only until the pipeline's model is trained
    newest: int  # cut-off at which the newest model was trained
    delay: int = 0
    pending: Model | None = None
    pending_gate: gate_rules.GateResult | None = None  # the pending model's held-out gate
    pending_since: int = -1  # the first period the pending model shadowed
    promoted_at: int = -1
    periods: list[dict] = field(default_factory=list)
    decisions: list[dict] = field(default_factory=list)
    training_seconds: float = 0.0


@dataclass
class Result:
    """Each policy's periods and decisions, with what they add up to."""

    policies: dict[str, RetrainPolicy]
    replays: dict[str, Replay]
    settings: dict
    seconds: dict[str, float]
    skipped: list[str]

    def summary(self) -> pd.DataFrame:
        rows = []
        for name, r in self.replays.items():
            served = pd.DataFrame(r.periods)
            rows.append({
                "policy": name,
                "label_delay": r.delay,
                "roc_auc": served["roc_auc"].mean(),
                "pr_auc": served["pr_auc"].mean(),
                "brier": served["brier"].mean(),
                "abs_calibration_gap": served["calibration_gap"].abs().mean(),
                "failing": int((served["status"] == "fail").sum()),
                "warning": int((served["status"] == "warn").sum()),
                "retrains": int(served["retrained"].sum()),
                "promotions": int(served["promoted"].sum()),
                "training_seconds": r.training_seconds,
                **_estimates(r.periods),
                "described": self.policies[name].describe(),
            })  # fmt: skip
        return pd.DataFrame(rows)

    def delay_cost(self) -> pd.DataFrame:
        """What late labels cost each policy: its figures with labels `delay` periods late
        minus the same policy's with labels at once (empty when every delay is 0)."""
        summary = self.summary().set_index("policy")
        shown = ["roc_auc", "pr_auc", "brier", "failing", "warning", "retrains", "promotions"]
        rows = []
        for label, r in self.replays.items():
            at_once = replay_label(r.name, 0)
            if r.delay and at_once in self.replays:
                late, now = summary.loc[label], summary.loc[at_once]
                rows.append({"policy": r.name, "label_delay": r.delay}
                            | {f"{k}_at_once": now[k] for k in shown[:3]}
                            | {f"{k}_late": late[k] for k in shown[:3]}
                            | {f"{k}_change": late[k] - now[k] for k in shown})  # fmt: skip
        return pd.DataFrame(rows)

    def periods_frame(self) -> pd.DataFrame:
        return pd.DataFrame([row | {"policy": name} for name, r in self.replays.items()
                             for row in r.periods])  # fmt: skip

    def to_json(self) -> dict:
        return {
            "settings": self.settings,
            "seconds": self.seconds,
            "skipped_batches": self.skipped,
            "summary": self.summary().to_dict(orient="records"),
            "label_delay_cost": self.delay_cost().to_dict(orient="records"),
            "policies": {
                name: {"policy": vars(self.policies[name]) | {"described":
                                                             self.policies[name].describe()},
                       "label_delay": r.delay, "periods": r.periods, "decisions": r.decisions}
                for name, r in self.replays.items()
            },
        }  # fmt: skip


def replay_label(name: str, delay: int) -> str:
    """A policy's name in the results: itself with labels at once, else with its delay."""
    return name if not delay else f"{name}, labels {delay} late"


def _worst(statuses: list[str]) -> str:
    return next((s for s in ("fail", "warn") if s in statuses), "pass")


def _estimates(periods: list[dict]) -> dict[str, float]:
    """How the estimates before labels did over a policy's periods: per metric, the share of
    periods whose realized figure lies in the estimate's interval and the mean absolute error."""
    found = estimate.coverage(periods)
    names = {"estimate_inside": "inside", "estimate_mae": "mean_absolute_error"}
    return {f"{m}_{name}": found.get(m, {}).get(key, math.nan)
            for m in ("roc_auc", "brier") for name, key in names.items()}  # fmt: skip


class Backtest:
    """The periods, the candidates and the rules every policy is replayed under."""

    def __init__(self, periods: Periods, spec: FeatureSpec, trainer: Trainer, gates: dict,
                 reference_periods: int, max_rows: int = 0):  # fmt: skip
        # monitoring compares the columns the model sees (the trainer derives its own)
        self.periods, self.trainer, self.gates = periods, trainer, gates
        self.spec = spec.as_seen_by_model()
        self.rules = MonitorRules.from_gates(gates)
        self.first, self.held_out, self.max_rows = reference_periods, trainer.held_out, max_rows
        if not self.held_out < self.first < len(periods.names):
            raise ConfigError(
                f"the backtest needs periods after the {self.first} reference periods; the data "
                f"has {len(periods.names)} labelled periods"
            )
        self._judged: dict[tuple[str, int], dict] = {}
        self._held: dict[str, tuple] = {}
        self.assess_seconds = 0.0

    # -- what a model is judged against --------------------------------------------------------

    def _reference(self, model: Model) -> tuple:
        if model.key not in self._held:
            first, cutoff = model.cutoff - model.held_out, model.cutoff
            rows, p = self.periods.frame(first, cutoff), model.scores(self.periods, first, cutoff)
            training = self.periods.frame(model.start, first)
            self._held[model.key] = (
                drift.sample_rows(scored_frame(rows, self.spec, p, model.threshold), self.max_rows),
                verdict.held_out(rows[self.spec.target], p),
                monitor.known_categories(training, self.spec),
            )
        return self._held[model.key]

    def assess(self, model: Model, t: int) -> dict:
        """The monitor's verdict of `model` serving period `t` (each pair judged once)."""
        if (model.key, t) not in self._judged:
            start = time.perf_counter()
            ref, held, known = self._reference(model)
            batch = self.periods.frame(t, t + 1)
            proba = model.scores(self.periods, t, t + 1)
            taken = stream.from_frame(batch, proba, self.spec, self.max_rows, seed=t, known=known,
                                      threshold=model.threshold)  # fmt: skip
            found = monitor.assess(ref, taken, self.spec, held, self.rules)
            self._judged[(model.key, t)] = found
            self.assess_seconds += time.perf_counter() - start
        return self._judged[(model.key, t)]

    def _compare(self, challenger: Model, champion: Model, first: int, last: int) -> Evidence:
        """The gates and DeLong's paired difference of two models on the same periods, each
        model deciding at its own threshold."""
        return compare(self.periods.frame(first, last)[self.spec.target],
                       champion.scores(self.periods, first, last),
                       challenger.scores(self.periods, first, last), self.gates,
                       self.periods.span(first, last), self.periods.names[first:last],
                       (champion.threshold, challenger.threshold))  # fmt: skip

    def _record(self, found: Evidence) -> dict:
        """A comparison as a decision records it: the gates' verdict, what failed, the paired
        difference and the periods it was on."""
        check, paired, nan = found.gate, found.difference, math.nan
        if check is None:
            return {"passed": False, "promotable": False,
                    "why": ["not enough labelled rows of both classes to compare"],
                    "roc_auc_difference": nan, "interval": [nan, nan], "p_value": nan,
                    "rows": found.rows, "on": found.source}  # fmt: skip
        failed = check.table[check.table["status"] != "pass"]
        why = [f"{r.metric} {r.challenger:.4f} outside {r.allowed}" for r in failed.itertuples()]
        if check.passed and not check.promotable:
            rule = self.gates["metrics"][self.gates["selection_metric"]] or {}
            why.append(f"{self.gates['selection_metric']} not better by "
                       f"{rule.get('min_improvement', 0):g}")  # fmt: skip
        return {"passed": check.passed, "promotable": check.promotable, "why": why,
                "roc_auc_difference": paired.difference, "interval": [paired.low, paired.high],
                "p_value": paired.p_value, "rows": paired.rows, "on": found.source}  # fmt: skip

    # -- one cut-off of one policy -------------------------------------------------------------

    @staticmethod
    def seen(r: Replay) -> str:
        """The verdict known at the next cut-off of the model serving: the last period's
        (before its labels, when they are late), and the full verdict of the period whose
        labels have just arrived when that model served it."""
        if not r.periods:
            return "pass"
        if not r.delay:
            return r.periods[-1]["status"]
        found = [r.periods[-1]["before_labels"]]
        labelled = len(r.periods) - 1 - r.delay
        if labelled >= 0 and r.periods[labelled]["served_by"] == r.periods[-1]["served_by"]:
            found.append(r.periods[labelled]["status"])
        return _worst(found)

    def _window(self, r: Replay, known: int) -> tuple[int, int] | None:
        """The window a policy trains on when the periods before `known` are labelled."""
        first = known - self.held_out
        start = 0 if r.policy.window == "expanding" else max(0, first - int(r.policy.window))
        return (start, known) if start < first else None

    def likely(self, r: Replay, t: int, window: tuple[int, int] | None,
               ahead: int = 2) -> list[tuple[int, int]]:  # fmt: skip
        """The windows a policy's clock will have it train at the next `ahead` cut-offs,
        guessed before period `t` is served (a trigger's verdict is not known yet; a
        challenger is taken to pass its held-out gate and shadow): trained early, in the time
        the monitor judges the periods, so no worker waits for the next cut-off."""
        found: list[tuple[int, int]] = []
        if not r.policy.every:
            return found
        trained = window is not None
        newest = t if trained else r.newest
        since = t if trained else r.pending_since
        shadowing = bool(r.policy.shadow_periods) and (trained or r.pending is not None)
        for u in range(t + 1, min(t + 1 + ahead, len(self.periods.names))):
            if shadowing and u - r.delay - since < r.policy.shadow_periods:
                continue
            labelled = u - r.delay  # a window with a period not seen by the champion
            fresh = r.champion is None or labelled > r.champion.cutoff
            if r.policy.due_after(u - newest) and fresh and (guess := self._window(r, labelled)):
                found.append(guess)
                newest, since, shadowing = u, u, bool(r.policy.shadow_periods)
        return found

    def decide(self, r: Replay, t: int) -> tuple[int, int] | None:
        """At cut-off `t` (period `t` not yet seen, periods before `t - r.delay` labelled):
        judge a challenger whose shadowed periods are labelled, then say which window to
        train, if any."""
        decision: dict = {"cutoff": self.periods.names[t], "champion": r.champion.key}
        known = t - r.delay  # periods before it are labelled
        pending = r.pending
        if pending and known - r.pending_since >= r.policy.shadow_periods:
            shadow = self._compare(pending, r.champion, r.pending_since, known)
            decision["shadow_gate"] = self._record(shadow) | {"challenger": pending.key}
            if promotion.decide(r.pending_gate, [shadow], needs_evidence=True).allowed:
                r.champion, r.promoted_at = pending, t
            r.pending = r.pending_gate = None
        due = r.policy.due_after(t - r.newest)
        # a verdict of the model that served the last period; a model promoted now starts afresh
        status = self.seen(r)
        triggered = r.policy.triggered_by(status) and r.promoted_at != t
        window = None
        if r.pending is None and (due or triggered) and known > r.champion.cutoff:
            window = self._window(r, known)
        decision |= {"due": due, "triggered": triggered, "status_seen": status,
                     "labelled_before": self.periods.names[known] if known >= 0 else None,
                     "train": None if window is None else list(window)}  # fmt: skip
        r.decisions.append(decision)
        return window

    def serve(self, r: Replay, t: int, window: tuple[int, int] | None) -> None:
        """After training: the held-out gate for a new model, then period `t` served."""
        events, decision = [], r.decisions[-1]
        if "shadow_gate" in decision:
            gate = decision["shadow_gate"]
            verb = "promoted" if r.promoted_at == t else "not promoted"
            events.append(
                f"{gate['challenger']} {verb} on {gate['on']} in shadow (ROC AUC "
                f"{gate['roc_auc_difference']:+.4f} [{gate['interval'][0]:+.4f}, "
                f"{gate['interval'][1]:+.4f}] vs the champion, {gate['rows']:,} rows)"
                + (f": {'; '.join(gate['why'])}" if gate["why"] else "")
            )
        if window is not None:
            model = self.trainer.get(window)
            if isinstance(model, str):
                events.append(f"retraining failed: {model}")
            else:
                r.newest = t
                r.training_seconds += model.fit_seconds
                first = model.cutoff - self.held_out
                held = self._compare(model, r.champion, first, model.cutoff)
                gate = decision["held_out_gate"] = self._record(held) | {
                    "challenger": model.key, "candidate": model.candidate}  # fmt: skip
                trained = (f"trained {model.key} ({model.candidate}, "
                           f"{self.periods.span(model.start, first)})")  # fmt: skip
                passed = held.gate is not None and held.gate.passed
                if passed and r.policy.shadow_periods:  # it shadows before it may serve
                    r.pending, r.pending_gate, r.pending_since = model, held.gate, t
                    events.append(f"{trained}, in shadow")
                elif passed and promotion.decide(held.gate, []).allowed:
                    r.champion, r.promoted_at = model, t
                    events.append(f"{trained}, promoted on the held-out gate")
                else:
                    events.append(f"{trained}, discarded on {gate['on']}: "
                                  f"{'; '.join(gate['why'])}")  # fmt: skip
        self._serve_period(r, t, window is not None, events)

    def _serve_period(self, r: Replay, t: int, retrained: bool, events: list[str]) -> None:
        model = r.champion
        batch = self.periods.frame(t, t + 1)
        y, p = batch[self.spec.target], model.scores(self.periods, t, t + 1)
        judged = self.assess(model, t)
        roc = intervals.roc_auc(y, p)
        row = {
            "period": self.periods.names[t], "served_by": model.key, "model": model.candidate,
            "trained_on": self.periods.span(model.start, model.cutoff - model.held_out),
            "rows": len(batch), "positive_rate": float(y.mean()),
            "roc_auc": roc.value, "roc_auc_low": roc.low, "roc_auc_high": roc.high,
            "pr_auc": judged.get("pr_auc", math.nan), "brier": judged.get("brier", math.nan),
            "mean_proba": float(np.mean(p)),
            "calibration_gap": float(y.mean() - np.mean(p)),
            "drift_share": judged["drift_share"], "status": judged["status"],
            "reasons": judged["reasons"], "warnings": judged["warnings"],
            "before_labels": judged["before_labels"]["status"],
            "estimated": judged.get("estimated", {}),  # from the probabilities, before labels
            "retrained": retrained, "promoted": r.promoted_at == t,
            "shadow": None, "shadow_roc_auc": math.nan, "events": events,
        }  # fmt: skip
        if r.pending is not None:
            row["shadow"] = r.pending.key
            shadowed = r.pending.scores(self.periods, t, t + 1)
            row["shadow_roc_auc"] = intervals.roc_auc(y, shadowed).value
        r.periods.append(row)


def run(bt: Backtest, policies: dict[str, RetrainPolicy], progress: Callable[[str], None] = print,
        label_delay: int = 0) -> Result:  # fmt: skip
    """Replay every policy period by period, with labels at once and, given a `label_delay`,
    also with each period's labels known that many periods later; the training a cut-off
    needs runs at once."""
    started = time.perf_counter()
    names, first = bt.periods.names, bt.first
    if label_delay >= len(names) - first:
        raise ConfigError(f"label_delay {label_delay}: no period replayed would ever be "
                          f"labelled (the data has {len(names) - first} periods after the "
                          "reference)")  # fmt: skip
    delays = [0, label_delay] if label_delay else [0]
    replays = {replay_label(n, d): Replay(n, p, None, first, d)
               for d in delays for n, p in policies.items()}  # fmt: skip
    bt.trainer.submit([(0, first)])
    # the clock policies' windows of the next cut-off train beside the pipeline's model
    bt.trainer.submit([w for r in replays.values() for w in bt.likely(r, first, None)], guess=True)
    initial = bt.trainer.get((0, first))
    if isinstance(initial, str):
        raise DataError(Problem("backtest", None, initial))
    for r in replays.values():
        r.champion = initial
    late = (f", labels at once and {label_delay} period{'s' if label_delay != 1 else ''} late"
            if label_delay else "")  # fmt: skip
    progress(f"initial model {initial.key}: {initial.candidate} on "
             f"{bt.periods.span(0, first - bt.held_out)}; {len(names) - first} periods to replay, "
             f"{len(policies)} policies{late}")  # fmt: skip
    for t in range(first, len(names)):
        step = time.perf_counter()
        windows = {n: bt.decide(r, t) for n, r in replays.items()}
        bt.trainer.submit([w for w in windows.values() if w is not None])
        guesses = [w for n, r in replays.items() for w in bt.likely(r, t, windows[n])]
        bt.trainer.submit(guesses, guess=True)
        # the policies that train nothing now are served while the others' models train
        for n in sorted(replays, key=lambda n: windows[n] is not None):
            bt.serve(replays[n], t, windows[n])
        served = ", ".join(f"{n} {r.periods[-1]['roc_auc']:.3f}" for n, r in replays.items())
        progress(f"[{t - first + 1}/{len(names) - first}] {names[t]}: ROC AUC {served} "
                 f"({time.perf_counter() - step:.1f}s)")  # fmt: skip
    seconds = {"total": time.perf_counter() - started, "training": bt.trainer.seconds,
               "fit_seconds": bt.trainer.fit_seconds,
               "monitoring": bt.assess_seconds, "fits": bt.trainer.fits,
               "guessed_windows_unused": bt.trainer.unused,
               "workers": bt.trainer.workers}  # fmt: skip
    settings = {"periods": names, "reference_periods": first, "held_out_periods": bt.held_out,
                "candidates": bt.trainer.names, "selection_metric": bt.gates["selection_metric"],
                "rows": len(bt.periods.data), "label_delay": label_delay}  # fmt: skip
    named = {label: policies[r.name] for label, r in replays.items()}
    return Result(named, replays, settings, seconds, [])
