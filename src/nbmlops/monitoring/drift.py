"""Monitoring with evidently: data drift, prediction drift and performance per batch."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from .. import html
from ..metrics.scores import PRED, PROBA
from ..spec import FeatureSpec
from ..storage import write_text
from . import columntests
from .rules import MonitorRules


def _definition(spec: FeatureSpec, labelled: bool):
    from evidently import BinaryClassification, DataDefinition

    classification = (
        [BinaryClassification(target=spec.target, prediction_labels=PRED, prediction_probas=PROBA)]
        if labelled
        else None
    )
    return DataDefinition(
        numerical_columns=spec.numeric + [PROBA],
        categorical_columns=list(spec.categorical),
        classification=classification,
    )


def _dataset(df: pd.DataFrame, spec: FeatureSpec, labelled: bool):
    from evidently import Dataset

    columns = spec.columns + [PROBA, PRED] + ([spec.target] if labelled else [])
    frame = df[columns]
    if labelled:  # 0/1 labels may arrive as floats (a batch with some rows unlabelled)
        frame = frame.astype({spec.target: "int8"})
    return Dataset.from_pandas(frame, data_definition=_definition(spec, labelled))


def _save(snapshot, path: str | Path, summary: str | None = None,
          assets: str | Path | None = None) -> Path:  # fmt: skip
    """evidently's page, compacted. A batch page (`summary`: the href of the monitoring
    summary from it) shares evidently's scripts and fonts with the project's other pages (in
    `assets`, default beside it) and links back to the summary."""
    page = html.compact_report_data(snapshot.get_html_str(as_iframe=False))
    page = html.neutralize_script_data(page)  # first: no data can then end a script block
    if summary is not None:
        page = html.shared(page, path, assets)
        page = html.with_way_back(page, summary, "monitoring summary")
    return write_text(path, page)


def performance_report(scored: pd.DataFrame, spec: FeatureSpec, path: str | Path) -> dict:
    """Evidently classification report of one scored window; returns evidently's metric values."""
    from evidently import Report
    from evidently.presets import ClassificationPreset

    snapshot = Report([ClassificationPreset()]).run(current_data=_dataset(scored, spec, True))
    _save(snapshot, path)
    return {m["metric_name"]: m["value"] for m in snapshot.dict()["metrics"]}


def sample_rows(df: pd.DataFrame, max_rows: int, seed: int = 0) -> pd.DataFrame:
    """At most `max_rows` rows drawn uniformly without replacement (all rows when 0 or fewer).

    evidently's drift tests here compare distances (Wasserstein, Jensen-Shannon) with a fixed
    threshold of 0.1; their sampling error shrinks like sqrt(1/n_reference + 1/n_current), so
    past ~100k current rows it is set by the reference window, and a sample decides as the
    full batch does (docs/monitoring-at-scale.md has the figures).
    """
    if max_rows <= 0 or len(df) <= max_rows:
        return df
    return df.sample(n=max_rows, random_state=seed)


def has_labels(batch: pd.DataFrame, spec: FeatureSpec) -> bool:
    return spec.target in batch and batch[spec.target].notna().all()


def both_classes(batch: pd.DataFrame, spec: FeatureSpec) -> bool:
    """Labels of both classes: what classification performance needs to be measured at all."""
    return has_labels(batch, spec) and batch[spec.target].nunique() == 2


def batch_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    spec: FeatureSpec,
    path: str | Path | None,
    drift_share: float,
    fdr: float = MonitorRules.drift_fdr,
    summary: str = "../index.html",
    assets: str | Path | None = None,
) -> dict:
    """One evidently report for a batch against the reference; returns its summary.

    Feature drift share, prediction drift (drift of the predicted probability) and, where the
    batch and the reference have labels of both classes and the report is written to `path`,
    classification performance. Without a `path` only the drift is measured. Each feature's
    test is `columntests.plan`'s, its p-value tests judged together at false-discovery rate
    `fdr`. The page links back to the monitoring summary at `summary` (relative to it) and
    loads evidently's scripts from `assets` (`html.shared`).
    """
    from evidently import Report
    from evidently.metrics import ValueDrift
    from evidently.presets import ClassificationPreset, DataDriftPreset

    labelled = path is not None and both_classes(current, spec) and both_classes(reference, spec)
    tests = columntests.plan(reference, current, spec.numeric, list(spec.categorical), fdr)
    drift_tests = {"fdr": fdr, "cutoff": tests.cutoff, "p_values": tests.p_values,
                   "methods": tests.methods}  # fmt: skip
    if path is None:
        return _unrendered(reference, current, spec, tests, drift_share) | {
            "drift_tests": drift_tests
        }
    parts = [
        DataDriftPreset(
            columns=spec.columns,
            drift_share=drift_share,
            per_column_method=tests.methods or None,
            per_column_threshold=tests.thresholds or None,
        ),  # fmt: skip
        ValueDrift(column=PROBA),
    ]
    if labelled:
        parts.append(ClassificationPreset())
    snapshot = Report(parts, include_tests=True).run(
        current_data=_dataset(current, spec, labelled),
        reference_data=_dataset(reference, spec, labelled),
    )
    _save(snapshot, path, summary, assets)
    return summarize(snapshot.dict(), spec, drift_share) | {"drift_tests": drift_tests}


def _unrendered(reference: pd.DataFrame, current: pd.DataFrame, spec: FeatureSpec,
                tests: columntests.Plan, drift_share: float) -> dict:  # fmt: skip
    """What `batch_report` finds, without its page: each column's drift by the very function
    and options evidently's ValueDrift uses, without the plots evidently draws while it
    computes (three quarters of a report's time). For the backtest, which judges dozens of
    batches and shows no page; a test keeps both ways equal."""
    from evidently.legacy.calculations.data_drift import get_one_column_drift
    from evidently.legacy.core import ColumnType
    from evidently.legacy.metric_results import DatasetColumns, DatasetUtilityColumns
    from evidently.legacy.options.data_drift import DataDriftOptions

    cur, ref = _dataset(current, spec, False), _dataset(reference, spec, False)
    cur_frame, ref_frame = cur.as_dataframe(), ref.as_dataframe()
    drifted, scores = {}, {}
    for column in [*spec.columns, PROBA]:
        kind = cur.column(column).type
        named = {k: [column] if kind == t else []
                 for k, t in (("num_feature_names", ColumnType.Numerical),
                              ("cat_feature_names", ColumnType.Categorical),
                              ("text_feature_names", ColumnType.Text),
                              ("datetime_feature_names", ColumnType.Datetime))}  # fmt: skip
        found = get_one_column_drift(
            current_data=cur_frame, reference_data=ref_frame, column_name=column,
            options=DataDriftOptions(all_features_stattest=tests.methods.get(column),
                                     all_features_threshold=tests.thresholds.get(column)),
            dataset_columns=DatasetColumns(
                utility_columns=DatasetUtilityColumns(date=None, id=None, target=None,
                                                      prediction=None),
                target_type=None, task=None, target_names=None, **named,
            ),
            column_type=kind, agg_data=True,
        )  # fmt: skip
        drifted[column], scores[column] = bool(found.drift_detected), float(found.drift_score)
    features = list(spec.columns)
    share = sum(drifted[c] for c in features) / len(features) if features else 0.0
    failed = sum(drifted.values()) + (share >= drift_share)  # evidently's count test: share <
    return {
        "drift_scores": {c: scores[c] for c in features},
        "drift_share": share,
        "features_compared": len(features),
        "drifted_features": [c for c in features if drifted[c]],
        "dataset_drift": share > drift_share,
        "prediction_drift": drifted[PROBA],
        "prediction_drift_score": scores[PROBA],
        "tests_passed": len(drifted) + 1 - failed,
        "tests_failed": failed,
        "tests_total": len(drifted) + 1,
    }


def summarize(result: dict, spec: FeatureSpec, drift_share: float) -> dict:
    """Drift and test figures from an evidently snapshot's dict, read by metric type and column."""
    drifted: dict[str, bool] = {}
    scores: dict[str, float] = {}
    for test in result["tests"]:
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type", "").endswith(":ValueDrift"):
            column = params["column"]
            drifted[column] = drifted.get(column, False) or _status(test) == "FAIL"
    for metric in result["metrics"]:
        cfg = metric["config"]
        if cfg["type"].endswith(":ValueDrift"):
            scores[cfg["column"]] = float(metric["value"])
    features = [c for c in spec.columns if c in drifted]
    n_drifted = sum(drifted[c] for c in features)
    share = n_drifted / len(features) if features else 0.0
    statuses = [_status(t) for t in result["tests"]]
    return {
        "drift_scores": {c: scores[c] for c in features if c in scores},
        "drift_share": share,
        "features_compared": len(features),
        "drifted_features": [c for c in features if drifted[c]],
        "dataset_drift": share > drift_share,
        "prediction_drift": bool(drifted.get(PROBA, False)),
        "prediction_drift_score": scores.get(PROBA, math.nan),
        "tests_passed": statuses.count("SUCCESS"),
        "tests_failed": statuses.count("FAIL"),
        "tests_total": len(statuses),
    }


def _status(test: dict) -> str:
    status = test.get("status")
    return getattr(status, "value", str(status))


def summary_frame(rows: Iterable[dict]) -> pd.DataFrame:
    """One row per batch, in batch order, for tables and plots."""
    keep = [
        "batch",
        "served_by",
        "control",
        "rows",
        "positive_rate",
        "drift_share",
        "prediction_drift",
        "prediction_drift_score",
        "roc_auc",
        "estimated_roc_auc",
        "pr_auc",
        "estimated_pr_auc",
        "brier",
        "estimated_brier",
        "mean_proba",
        "challenger_roc_auc",
        "disagreement",
        "status",
    ]
    rows = list(rows)
    df = pd.DataFrame(rows)
    for metric in ("roc_auc", "pr_auc", "brier"):  # estimated from probabilities alone
        df[f"estimated_{metric}"] = [r.get("estimated", {}).get(metric, [math.nan])[0]
                                     for r in rows]  # fmt: skip
    return df[[c for c in keep if c in df.columns]]


def plot_over_batches(summary: pd.DataFrame, drift_threshold: float | None = None):
    """Drift share, prediction drift and performance over batches (control batches apart)."""
    import matplotlib.pyplot as plt

    real = summary[summary["control"] == ""]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    x = range(len(real))
    axes[0].bar(x, real["drift_share"], color="#5677fc", label="share of drifted features")
    if drift_threshold is not None:
        axes[0].axhline(drift_threshold, ls="--", color="grey",
                        label=f"fails above {drift_threshold:.0%} of the features")  # fmt: skip
    moved = [i for i, flag in enumerate(real["prediction_drift"]) if flag]
    axes[0].plot(moved, [1.03] * len(moved), "v", color="#d9480f", ls="none",
                 label="prediction drift (the served model's scores moved)")  # fmt: skip
    axes[0].set(title="Drift by batch", ylim=(0, 1.1), ylabel="share of the model's features")
    curves = (("roc_auc", "o-"), ("challenger_roc_auc", "o:"), ("f1", "s-"),
              ("positive_rate", "^--"), ("disagreement", "x-."))  # fmt: skip
    for column, style in curves:
        if column in real:
            axes[1].plot(x, real[column], style, label=column)
    axes[1].set_title("Served model, shadow challenger and base rate by batch")
    for ax in axes:
        ax.set_xticks(list(x), real["batch"], rotation=45, ha="right")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    plt.close(fig)  # shown once, as the cell's result, not again by pyplot
    return fig
