"""Evaluate candidates on the held-out window and monitor later batches with the best one."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import features, gates, html, models, monitoring, registry, shadow, storage
from .features import BATCH, CONTROL, FeatureSpec


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
    primary_metric: str
    candidates: dict[str, Candidate]
    probas: dict[str, np.ndarray]

    @property
    def best_metrics(self) -> dict[str, float]:
        return self.table.set_index("model").loc[self.best].to_dict()


def evaluate_candidates(
    trained: dict[str, dict], holdout: pd.DataFrame, spec: FeatureSpec, primary_metric: str
) -> Evaluation:
    """Score every trained candidate on the held-out window and rank them."""
    probas, scores, candidates = {}, {}, {}
    for products in trained.values():
        record = storage.read_json(products["metrics"])
        name = record["model"]
        candidate = Candidate(
            storage.read_pickle(products["model"]), record, str(products["metrics"])
        )
        probas[name] = models.predict_proba(candidate.pipeline, holdout, spec)
        scores[name] = models.classification_metrics(holdout[spec.target], probas[name])
        candidates[name] = candidate
    table = models.compare(scores, primary_metric)
    return Evaluation(table, str(table.iloc[0]["model"]), primary_metric, candidates, probas)


def plot_candidates(result: Evaluation, holdout: pd.DataFrame, spec: FeatureSpec):
    """ROC curves and the main metrics of every candidate on the held-out window."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, proba in result.probas.items():
        fpr, tpr, _ = roc_curve(holdout[spec.target], proba)
        auc = result.table.set_index("model").loc[name, "roc_auc"]
        axes[0].plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})", lw=2 if name == result.best else 1)
    axes[0].plot([0, 1], [0, 1], ":", color="grey")
    axes[0].set(
        title="ROC on the held-out window",
        xlabel="false positive rate",
        ylabel="true positive rate",
    )
    axes[0].legend(fontsize=8)
    shown = ["roc_auc", "pr_auc", "f1", "precision", "recall"]
    result.table.set_index("model")[shown].plot.bar(ax=axes[1], rot=0)
    axes[1].set(title="Held-out metrics by candidate", ylim=(0, 1))
    axes[1].legend(fontsize=8, ncols=3)
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
        "features": ",".join(spec.columns),
    }


def evaluation_page(result: Evaluation, gate: gates.GateResult) -> str:
    """The candidates compared on the held-out window and the gate table, as one HTML page."""
    body = [
        html.para(f"Best by {result.primary_metric}: {result.best}."),
        html.heading("Candidates on the held-out window"),
        html.table(result.table),
        html.heading("Promotion gates against the committed baseline"),
        html.table(gate.table, {"pass": "pass", "FAIL": "fail"}),
    ]
    return html.page("Candidate evaluation", "".join(body), home=None)


def track_and_register(
    result: Evaluation,
    holdout: pd.DataFrame,
    spec: FeatureSpec,
    gate: gates.GateResult,
    store: registry.Store,
    context: dict,
    product,
) -> dict:
    """Log every candidate to MLflow, then, if the gates pass, register the best as challenger.

    The evidently report is written aside first and moved into place only after registration,
    so a build stopped by a gate leaves the previous products, champion and baseline as they were.
    """
    scored = models.scored_frame(holdout, spec, result.probas[result.best])
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "performance.html"
        monitoring.performance_report(scored, spec, report)
        comparison = storage.write_text(
            Path(tmp) / "evaluation.html", evaluation_page(result, gate)
        )
        start = time.perf_counter()
        with registry.store_errors(store, "logging the candidates", "No version was registered."):
            runs = registry.log_candidates(store, result, context, registry.build_id())
            best_run = runs[result.best]
            for run in runs.values():
                registry.log_report(store, run["run_id"], comparison)
            registry.log_report(store, best_run["run_id"], report)
        gate.raise_if_failed()
        version = registry.register_challenger(
            store, best_run, {**context, "candidate": result.best}
        )
        tracking_seconds = time.perf_counter() - start
        with storage.atomic_path(product["performance"]) as target:
            shutil.copyfile(report, target)
    best = {
        "model": result.best,
        "version": version,
        "registered_model": store.model_name,
        "run_id": best_run["run_id"],
        "sha256": best_run["sha256"],
        "primary_metric": result.primary_metric,
        "threshold": models.THRESHOLD,
        "holdout": result.best_metrics,
        "tracking_seconds": round(tracking_seconds, 2),
    }
    storage.write_json(product["best"], best)
    storage.write_json(
        product["metrics"],
        {
            "best": result.best,
            "version": version,
            "primary_metric": result.primary_metric,
            "candidates": result.table.set_index("model").to_dict(orient="index"),
            "runs": {name: run["run_id"] for name, run in runs.items()},
            "gate": gate.table.to_dict(orient="records"),
            "promotable": gate.promotable,
        },
    )
    return best


def monitor_batches(
    scores: pd.DataFrame,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    batches: pd.DataFrame,
    spec: FeatureSpec,
    product,
    drift_share: float,
    min_roc_auc: float,
    max_rows: int = 0,
) -> pd.DataFrame:
    """One evidently report per batch, a tests JSON and a summary page; returns the summary.

    Batches (and the reference) larger than `max_rows` are compared on a uniform sample of that
    many rows; performance metrics always use every row.

    The served model's scores (champion, or its fallback) are what is monitored; the shadow
    challenger's disagreement and metrics sit beside them. Category values training never saw
    are a warning on the batch (the models encode them as unknown), not a failure.
    """
    served = scores.groupby(BATCH, sort=False)
    shadow_rows = shadow.summarize(scores, spec).set_index("batch").to_dict(orient="index")
    reference = models.scored_frame(
        holdout, spec, served.get_group(shadow.REFERENCE)["served_proba"].to_numpy()
    )
    reference = monitoring.sample_rows(reference, max_rows)
    known = features.known_categories(train, spec)
    target_dir = Path(product["batches"])
    staging = storage.staging_dir(target_dir)
    groups = list(batches.groupby(BATCH, sort=False))
    rows = []
    for i, (name, batch) in enumerate(groups, 1):
        start = time.perf_counter()
        proba = served.get_group(name)["served_proba"].to_numpy()
        scored = models.scored_frame(batch, spec, proba)
        report = f"batch-{name}.html"
        row = {
            "batch": str(name),
            "control": str(batch[CONTROL].iloc[0]),
            "rows": len(batch),
            "report": f"{target_dir.name}/{report}",
        }
        compared = monitoring.sample_rows(scored, max_rows, seed=i)
        row["rows_compared"] = len(compared)
        row |= monitoring.batch_report(reference, compared, spec, staging / report, drift_share)
        if monitoring.has_labels(batch, spec):
            row |= models.classification_metrics(batch[spec.target], proba)
        row |= {k: v for k, v in shadow_rows[name].items() if k != "rows"}
        passed, reasons = monitoring.gate(row, min_roc_auc)
        unseen = features.unseen_categories(known, batch)
        warnings = [f"{col}: values unseen in training: " +
                    ", ".join(f"{value!r} ({n} rows)" for value, n in list(counts.items())[:3])
                    for col, counts in unseen.items()]  # fmt: skip
        row |= {"status": "pass" if passed else "fail", "reasons": reasons,
                "unseen_categories": unseen, "warnings": warnings}  # fmt: skip
        rows.append(row)
        for warning in warnings:
            print(f"warning: batch {name}: {warning}", flush=True)
        print(
            f"[{i}/{len(groups)}] batch {name}: {len(batch)} rows, drift share "
            f"{row['drift_share']:.2f}, disagreement {row['disagreement']:.3f}, {row['status']} "
            f"({time.perf_counter() - start:.1f}s)",
            flush=True,
        )
    storage.replace_dir(staging, target_dir)
    summary = monitoring.summary_frame(rows)
    storage.write_json(
        product["tests"],
        {"drift_share_threshold": drift_share, "min_roc_auc": min_roc_auc,
         "max_rows_compared": max_rows, "batches": rows},
    )  # fmt: skip
    storage.write_text(product["summary"], monitoring_page(summary, rows, drift_share))
    return summary


def monitoring_page(summary: pd.DataFrame, rows: list[dict], drift_threshold: float) -> str:
    """The monitoring summary: counts, plots over batches, and a table linking every report."""
    real = summary[summary["control"] == ""]
    body = [
        html.cards(
            {
                "served by": ", ".join(sorted(set(real["served_by"]))),
                "batches": len(real),
                "failing": int((real["status"] == "fail").sum()),
                "max drift share": float(real["drift_share"].max()) if len(real) else 0.0,
                "mean disagreement": float(real["disagreement"].mean()) if len(real) else 0.0,
            }
        ),
        html.figure(monitoring.plot_over_batches(summary, drift_threshold)),
        html.heading("Batches (each links to its evidently report)"),
        html.table(
            summary.assign(
                reasons=["; ".join(r["reasons"]) for r in rows],
                warnings=["; ".join(r["warnings"]) for r in rows],
            ),  # fmt: skip
            {"pass": "pass", "fail": "fail", "True": "fail"},
            links={"batch": [r["report"] for r in rows]},
        ),
        html.para(
            "The served model is the champion (or its fallback); the challenger scores the same "
            "rows in shadow. Reference: the held-out window. Control batches check the "
            "monitoring itself: 'same' is drawn from the reference and should pass, "
            "'shifted' has every numeric feature moved by one standard deviation and must fail."
        ),
    ]
    unseen = [{"batch": r["batch"], "column": col, "value": value, "rows": n}
              for r in rows for col, values in r["unseen_categories"].items()
              for value, n in values.items()]  # fmt: skip
    if unseen:
        body += [
            html.heading("Category values training never saw (a warning, not a failure)"),
            html.table(pd.DataFrame(unseen)),
            html.para(
                "The models encode these values as unknown. If they keep coming, retrain "
                "on data that has them."
            ),  # fmt: skip
        ]
    return html.page("Monitoring summary", "".join(body), home="../index.html")
