"""Evaluate candidates on the held-out window, log them all, and register the best."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import html, session, storage
from ..calibration import threshold_of
from ..errors import ConfigError
from ..layout import stopped_record
from ..metrics.scores import classification_metrics, predict_proba, scored_frame
from ..monitoring import drift
from ..registry import gates
from ..registry.errors import RegistryError
from ..registry.evidence import held_out_window, window_end
from ..registry.loading import load_version
from ..registry.runs import log_candidates, log_report, register_challenger, version_with_hash
from ..registry.store import Store, store_errors
from ..registry.versions import NO_HISTORY, version_details
from ..spec import PERIOD, FeatureSpec, period_after
from . import candidates


@dataclass
class Candidate:
    """One trained candidate as the train task left it: the model, its record and file."""

    pipeline: object
    record: dict  # model, hyperparams, fit_seconds, train metrics
    record_file: str


@dataclass
class Evaluation:
    table: pd.DataFrame  # one row per candidate, best first
    best: str
    selection_metric: str
    candidates: dict[str, Candidate]
    probas: dict[str, np.ndarray]

    @property
    def best_metrics(self) -> dict[str, float]:
        return self.table.set_index("model").loc[self.best].to_dict()


def evaluate_candidates(
    trained: dict[str, dict],
    holdout: pd.DataFrame,
    spec: FeatureSpec,
    selection_metric: str,
    declared: list[str] | None = None,
) -> Evaluation:
    """Score every trained candidate on the held-out window and rank them; with `declared`
    (the env file's candidate names), the trained ones must be exactly those."""
    probas, scores, loaded = {}, {}, {}
    for products in trained.values():
        record = storage.read_json(products["metrics"])
        name = record["model"]
        candidate = Candidate(
            candidates.load(products["model"], record), record, str(products["metrics"])
        )
        probas[name] = predict_proba(candidate.pipeline, holdout, spec)
        scores[name] = classification_metrics(
            holdout[spec.target], probas[name], threshold_of(candidate.pipeline)
        )
        loaded[name] = candidate
    if declared is not None and sorted(loaded) != sorted(declared):
        raise ConfigError(f"the trained candidates {sorted(loaded)} are not the declared "
                          f"{sorted(declared)}; build again")  # fmt: skip
    table = candidates.compare(scores, selection_metric)
    return Evaluation(table, str(table.iloc[0]["model"]), selection_metric, loaded, probas)


def baseline_on_holdout(
    store: Store, baseline_file: str | Path, holdout: pd.DataFrame, spec: FeatureSpec
) -> tuple[dict | None, str, str | None]:
    """The committed champion's metrics on this build's held-out rows, where they come from,
    and the version scored (None when the committed metrics stand).

    The committed baseline file holds the champion's metrics on its own held-out window; a
    challenger held out on another window (a later month, another base rate) would be judged
    against different rows. So the champion the file names is loaded (its files checked
    against the hashes the file records) and scored on these rows, unless it trained or was
    chosen on them (a champion trained later than this build's held-out window). When it
    cannot be scored, the committed metrics stand, and the note says why.
    """
    from mlflow.exceptions import MlflowException

    record = gates.load_baseline(baseline_file)
    if record is None:
        return None, "no committed baseline: the floors alone apply", None
    named = str(record.get("version", ""))
    committed = f"the committed metrics of v{named} (on its own held-out window)"
    try:
        # the version holding the committed model file, whatever its number in this store
        version = version_with_hash(store, str(record.get("sha256", "")))
        if version is None:
            return record, f"{committed}: this store does not hold it ({NO_HISTORY})", None
        details = version_details(store, version)
        held = held_out_window(details)
        periods = list(dict.fromkeys(holdout[PERIOD].astype(str))) if PERIOD in holdout else []
        first = periods[0] if periods else ""
        span = " … ".join(dict.fromkeys([first, periods[-1]])) if periods else ""
        if held and held == span:  # its own held-out window: the committed figures are these
            return (
                record,
                f"v{version}, the champion, as committed: held out on these periods",
                version,
            )
        if not held or not first or not period_after(first, window_end(held)):
            why = (
                f"{committed}: v{version} was held out on {held or 'unknown'}, not before "
                f"these rows ({first}), so it may have learnt them"
            )
            return record, why, None
        model = load_version(store.pinned_by(baseline_file, version), version)
        found = classification_metrics(
            holdout[spec.target], predict_proba(model, holdout, spec), threshold_of(model)
        )
    except (RegistryError, MlflowException) as exc:  # IntegrityError too
        return record, f"{committed}: it cannot be scored here ({exc})", None
    except (ValueError, KeyError, TypeError) as exc:  # e.g. a feature set changed since
        return record, f"{committed}: it cannot score these rows ({exc})", None
    return (
        record | {"metrics": found},
        f"v{version}, the champion, scored on these held-out rows",
        version,
    )


def plot_candidates(result: Evaluation, holdout: pd.DataFrame, spec: FeatureSpec):
    """Every candidate on the held-out window: ROC curves, reliability (mean probability
    against the observed rate, in ten bins of equal rows), and the best one's confusion matrix
    at its decision threshold."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix, roc_curve

    y = holdout[spec.target].to_numpy()
    table = result.table.set_index("model")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    for name, proba in result.probas.items():
        width = 2.5 if name == result.best else 1
        fpr, tpr, _ = roc_curve(y, proba)
        axes[0].plot(fpr, tpr, lw=width, label=f"{name} (AUC {table.loc[name, 'roc_auc']:.3f})")
        bins = pd.qcut(pd.Series(proba).rank(method="first"), 10, labels=False)
        curve = pd.DataFrame({"p": proba, "y": y, "bin": bins}).groupby("bin").mean()
        axes[1].plot(curve["p"], curve["y"], "o-", lw=width, ms=3,
                     label=f"{name} (Brier {table.loc[name, 'brier']:.3f})")  # fmt: skip
    axes[0].plot([0, 1], [0, 1], ":", color="grey")
    axes[0].set(title=f"ROC (best by {result.selection_metric}: {result.best})",
                xlabel="false positive rate", ylabel="true positive rate")  # fmt: skip
    top = max(max(float(np.max(p)) for p in result.probas.values()), float(y.mean())) * 1.05
    axes[1].plot([0, top], [0, top], ":", color="grey")
    axes[1].set(title="Reliability: observed rate by mean probability",
                xlabel="mean predicted probability", ylabel="observed rate")  # fmt: skip
    for ax in axes[:2]:
        ax.legend(fontsize=8)
    threshold = threshold_of(result.candidates[result.best].pipeline)
    matrix = confusion_matrix(y, result.probas[result.best] >= threshold, labels=[0, 1])
    axes[2].imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        axes[2].text(j, i, f"{count:,}", ha="center", va="center",
                     color="white" if count > matrix.max() / 2 else "black")  # fmt: skip
    axes[2].set(title=f"{result.best} at its threshold {threshold:.3g}", xticks=[0, 1],
                yticks=[0, 1], xticklabels=["predicted 0", "predicted 1"],
                yticklabels=["actual 0", "actual 1"])  # fmt: skip
    fig.tight_layout()
    plt.close(fig)  # shown once, as the cell's result, not again by pyplot
    return fig


def data_tags(manifest: dict, spec: FeatureSpec) -> dict[str, object]:
    """What data a model saw, as run and version tags."""
    return {
        "data_source": manifest["source"],
        "target": spec.target,
        "data_sha256": manifest["sha256"],
        "raw_rows": sum(t["rows"] for t in manifest["tables"].values()),
        "modelled_rows": spec.counts.get("rows"),
        "train_window": spec.windows.get("train", ""),
        "holdout_window": spec.windows.get("holdout", ""),
        # the newest period the build held: a retrain finds new data after it
        "data_end": next(
            (
                b
                for b in reversed(spec.windows.get("batches", []))
                if not str(b).startswith("control-")
            ),
            "",
        ),
        "inputs": ",".join(spec.columns),  # what a request carries
        "features": ",".join(spec.model_columns),  # what the model sees
        "derived_by": (f"{spec.derived['file']}:{spec.derived['function']} "
                       f"sha256 {spec.derived['sha256'][:16]}" if spec.derived else ""),
    }  # fmt: skip


def evaluation_page(result: Evaluation, gate: gates.GateResult) -> str:
    """The candidates compared on the held-out window and the gate table, as one HTML page."""
    body = [
        html.para(f"Best by {result.selection_metric}: {result.best}."),
        html.heading("Candidates on the held-out window"),
        html.table(result.table),
        html.heading("Promotion gates against the committed baseline"),
        html.table(gate.table, {"pass": "pass", "FAIL": "fail"}),
    ]
    return html.page("Candidate evaluation", "".join(body), home=None)


@dataclass
class Registered:
    """What evaluation leaves for the build to write: its records and the best model's report."""

    best: dict  # the challenger: model, version, run, hash, held-out metrics
    metrics: dict  # the version registered and every candidate's MLflow run
    performance_page: str  # evidently's report of the best model on the held-out window


def track_and_register(
    result: Evaluation,
    holdout: pd.DataFrame,
    spec: FeatureSpec,
    gate: gates.GateResult,
    store: Store,
    context: dict,
) -> Registered:
    """Log every candidate to MLflow, then, if the gates pass, register the best as challenger.

    Nothing is written to the build's products here: a build stopped by a gate leaves the
    previous products, champion and baseline as they were.
    """
    best = result.candidates[result.best].pipeline
    scored = scored_frame(holdout, spec, result.probas[result.best], threshold_of(best))
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "performance.html"
        drift.performance_report(scored, spec, report)
        comparison = storage.write_text(
            Path(tmp) / "evaluation.html", evaluation_page(result, gate)
        )
        start = time.perf_counter()
        with store_errors(store, "logging the candidates", "No version was registered."):
            runs = log_candidates(store, result, context, session.build_id(), holdout[spec.columns])
            best_run = runs[result.best]
            for run in runs.values():
                log_report(store, run["run_id"], comparison)
            log_report(store, best_run["run_id"], report)
        gate.raise_if_failed()
        with store_errors(store, "looking for an identical model"):
            matched = version_with_hash(store, best_run["sha256"]) is not None
        version = register_challenger(store, best_run, {**context, "candidate": result.best})
        tracking_seconds = time.perf_counter() - start
        performance_page = report.read_text(encoding="utf-8")
    best = {
        "model": result.best,
        "version": version,
        "matched_existing_version": matched,  # the same model file was registered before
        "registered_model": store.model_name,
        "run_id": best_run["run_id"],
        "sha256": best_run["sha256"],
        "selection_metric": result.selection_metric,
        "threshold": threshold_of(result.candidates[result.best].pipeline),
        "holdout": result.best_metrics,
        "tracking_seconds": round(tracking_seconds, 2),
    }
    record = {"version": version, "runs": {name: run["run_id"] for name, run in runs.items()}}
    return Registered(best | {"build_id": session.build_id()}, record, performance_page)


def comparison(
    result: Evaluation, gate: gates.GateResult, baseline: dict | None, compared_with: str,
    against: str | None,
) -> dict:  # fmt: skip
    """What the build decided, as one record: every candidate's held-out figures, the
    committed champion's on the same rows (where it could be scored) and which it was, the
    gate table, whether the challenger is promotable, and the build's id."""
    return {
        "build_id": session.build_id(),
        "best": result.best,
        "selection_metric": result.selection_metric,
        "candidates": result.table.set_index("model").to_dict(orient="index"),
        "baseline": None if baseline is None else {
            "version": str(baseline.get("version", "")), "sha256": baseline.get("sha256"),
            "candidate": baseline.get("candidate"), "metrics": baseline.get("metrics", {}),
            "compared_with": compared_with,
        },
        "gate": gate.table.to_dict(orient="records"),
        "gate_passed": gate.passed,
        "promotable": gate.promotable,
        "gate_against": against,
    }  # fmt: skip


@contextmanager
def kept_when_stopped(record: dict, metrics_file: str | Path) -> Iterator[None]:
    """Keep the comparison of a build the gates stop beside its metrics file
    (`layout.stopped_record`), where the CI comment reads it; the products stay those of the
    last build that passed. A build that passes removes an earlier one's."""
    kept = stopped_record(metrics_file)
    try:
        yield
    except gates.GateError:
        storage.write_json(kept, record)
        raise
    kept.unlink(missing_ok=True)
