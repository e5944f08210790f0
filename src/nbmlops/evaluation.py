"""Evaluate candidates on the held-out window and monitor later batches with the best one."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import html, models, monitoring, storage
from .features import BATCH, CONTROL, FeatureSpec


@dataclass
class Evaluation:
    table: pd.DataFrame  # one row per candidate, best first
    best: str
    primary_metric: str
    model_paths: dict[str, str]
    probas: dict[str, np.ndarray]


def evaluate_candidates(
    trained: dict[str, dict], holdout: pd.DataFrame, spec: FeatureSpec, primary_metric: str
) -> Evaluation:
    """Score every trained candidate on the held-out window and rank them."""
    probas, scores, paths = {}, {}, {}
    for products in trained.values():
        name = storage.read_json(products["metrics"])["model"]
        pipeline = storage.read_pickle(products["model"])
        probas[name] = models.predict_proba(pipeline, holdout, spec)
        scores[name] = models.classification_metrics(holdout[spec.target], probas[name])
        paths[name] = str(products["model"])
    table = models.compare(scores, primary_metric)
    return Evaluation(table, str(table.iloc[0]["model"]), primary_metric, paths, probas)


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
    return fig


def write_results(result: Evaluation, holdout: pd.DataFrame, spec: FeatureSpec, product) -> None:
    """best.json, the evidently performance report of the best model, and metrics.json."""
    scored = models.scored_frame(holdout, spec, result.probas[result.best])
    monitoring.performance_report(scored, spec, product["performance"])
    best_metrics = result.table.set_index("model").loc[result.best].to_dict()
    storage.write_json(
        product["best"],
        {
            "model": result.best,
            "path": result.model_paths[result.best],
            "primary_metric": result.primary_metric,
            "threshold": models.THRESHOLD,
            "holdout": best_metrics,
        },
    )
    storage.write_json(
        product["metrics"],
        {
            "best": result.best,
            "primary_metric": result.primary_metric,
            "candidates": result.table.set_index("model").to_dict(orient="index"),
        },
    )


def monitor_batches(
    best: dict,
    reference: pd.DataFrame,
    batches: pd.DataFrame,
    spec: FeatureSpec,
    product,
    drift_share: float,
    min_roc_auc: float,
) -> pd.DataFrame:
    """One evidently report per batch, a tests JSON and a summary page; returns the summary."""
    pipeline = storage.read_pickle(best["path"])
    ref_scored = models.scored_frame(
        reference, spec, models.predict_proba(pipeline, reference, spec)
    )
    target_dir = Path(product["batches"])
    staging = storage.staging_dir(target_dir)
    groups = list(batches.groupby(BATCH, sort=False))
    rows = []
    for i, (name, batch) in enumerate(groups, 1):
        start = time.perf_counter()
        proba = models.predict_proba(pipeline, batch, spec)
        scored = models.scored_frame(batch, spec, proba)
        report = f"batch-{name}.html"
        row = {
            "batch": str(name),
            "control": str(batch[CONTROL].iloc[0]),
            "rows": len(batch),
            "report": f"{target_dir.name}/{report}",
        }
        row |= monitoring.batch_report(ref_scored, scored, spec, staging / report, drift_share)
        if monitoring.has_labels(batch, spec):
            row |= models.classification_metrics(batch[spec.target], proba)
        passed, reasons = monitoring.gate(row, min_roc_auc)
        row |= {"status": "pass" if passed else "fail", "reasons": reasons}
        rows.append(row)
        print(
            f"[{i}/{len(groups)}] batch {name}: {len(batch)} rows, drift share "
            f"{row['drift_share']:.2f}, {row['status']} ({time.perf_counter() - start:.1f}s)",
            flush=True,
        )
    storage.replace_dir(staging, target_dir)
    summary = monitoring.summary_frame(rows)
    storage.write_json(
        product["tests"],
        {
            "model": best["model"],
            "drift_share_threshold": drift_share,
            "min_roc_auc": min_roc_auc,
            "batches": rows,
        },
    )
    storage.write_text(product["summary"], monitoring_page(summary, rows, best, drift_share))
    return summary


def monitoring_page(
    summary: pd.DataFrame, rows: list[dict], best: dict, drift_threshold: float
) -> str:
    """The monitoring summary: counts, plots over batches, and a table linking every report."""
    real = summary[summary["control"] == ""]
    body = [
        html.cards(
            {
                "model": best["model"],
                "batches": len(real),
                "failing": int((real["status"] == "fail").sum()),
                "max drift share": float(real["drift_share"].max()) if len(real) else 0.0,
            }
        ),
        html.figure(monitoring.plot_over_batches(summary, drift_threshold)),
        html.heading("Batches (each links to its evidently report)"),
        html.table(
            summary.assign(reasons=["; ".join(r["reasons"]) for r in rows]),
            {"pass": "pass", "fail": "fail", "True": "fail"},
            links={"batch": [r["report"] for r in rows]},
        ),
        html.para(
            "Reference: the held-out window. Control batches check the monitoring itself: "
            "'same' is drawn from the reference and should pass, 'shifted' has every numeric "
            "feature moved by one standard deviation and must fail."
        ),
    ]
    return html.page("Monitoring summary", "".join(body), home="../index.html")
