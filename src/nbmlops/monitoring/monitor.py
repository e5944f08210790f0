"""Monitor batches with the served model: drift, performance and the shadow challenger per batch.

The monitor task's logic: it takes the build's data and the scores, writes one evidently report
per batch into the folder it is given, and returns the rest for the task to write.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import html, metrics
from ..spec import BATCH, CONTROL, FeatureSpec
from . import drift, scoring


def latest_batches(batches: pd.DataFrame, last: int) -> pd.DataFrame:
    """The newest `last` real batches and the control batches; every batch when `last` is 0."""
    if last <= 0:
        return batches
    real = [b for b in dict.fromkeys(batches.loc[batches[CONTROL] == "", BATCH])][-last:]
    return batches[batches[BATCH].isin(real) | (batches[CONTROL] != "")]


def known_categories(train: pd.DataFrame, spec: FeatureSpec) -> dict[str, set]:
    """Per categorical feature, the values training saw."""
    return {col: set(train[col].dropna()) for col in spec.categorical}


def unseen_categories(known: dict[str, set], batch: pd.DataFrame) -> dict:
    """Per categorical feature, the values of `batch` outside `known`, with counts (top 20)."""
    found = {}
    for col, seen in known.items():
        new = batch[col].dropna()
        new = new[~new.isin(seen)]
        if len(new):
            found[col] = {str(k): int(v) for k, v in new.value_counts().head(20).items()}
    return found


@dataclass
class Monitored:
    """One row per batch, in batch order; the tests record; the summary table."""

    rows: list[dict]
    tests: dict
    summary: pd.DataFrame


def monitor_batches(
    scores: pd.DataFrame,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    batches: pd.DataFrame,
    spec: FeatureSpec,
    report_dir: Path,
    linked_as: str,
    drift_share: float,
    min_roc_auc: float,
    max_rows: int = 0,
) -> Monitored:
    """One evidently report per batch, written into `report_dir`; returns every batch's figures.

    Pages link the reports as `linked_as/batch-NAME.html`.

    Batches (and the reference) larger than `max_rows` are compared on a uniform sample of that
    many rows; performance metrics always use every row.

    The served model's scores (champion, or its fallback) are what is monitored; the shadow
    challenger's disagreement and metrics sit beside them. Category values training never saw
    are a warning on the batch (the models encode them as unknown), not a failure.
    """
    served = scores.groupby(BATCH, sort=False)
    shadow_rows = scoring.summarize(scores, spec).set_index("batch").to_dict(orient="index")
    reference = metrics.scored_frame(
        holdout, spec, served.get_group(scoring.REFERENCE)["served_proba"].to_numpy()
    )
    reference = drift.sample_rows(reference, max_rows)
    known = known_categories(train, spec)
    groups = list(batches.groupby(BATCH, sort=False))
    rows = []
    for i, (name, batch) in enumerate(groups, 1):
        start = time.perf_counter()
        proba = served.get_group(name)["served_proba"].to_numpy()
        scored = metrics.scored_frame(batch, spec, proba)
        report = f"batch-{name}.html"
        row = {
            "batch": str(name),
            "control": str(batch[CONTROL].iloc[0]),
            "rows": len(batch),
            "report": f"{linked_as}/{report}",
        }
        compared = drift.sample_rows(scored, max_rows, seed=i)
        row["rows_compared"] = len(compared)
        row |= drift.batch_report(reference, compared, spec, report_dir / report, drift_share)
        if drift.has_labels(batch, spec):
            row |= metrics.classification_metrics(batch[spec.target], proba)
        row |= {k: v for k, v in shadow_rows[name].items() if k != "rows"}
        passed, reasons = drift.gate(row, min_roc_auc)
        unseen = unseen_categories(known, batch)
        warnings = [f"{col}: values unseen in training: " +
                    ", ".join(f"{value!r} ({n} rows)" for value, n in list(counts.items())[:3])
                    for col, counts in unseen.items()]  # fmt: skip
        if drift.has_labels(batch, spec) and not drift.both_classes(batch, spec):
            only = int(batch[spec.target].iloc[0])
            warnings.append(
                f"{spec.target}: every label is {only}, so ROC AUC and PR AUC are not defined "
                "for this batch; its performance is not judged"
            )
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
    tests = {"drift_share_threshold": drift_share, "min_roc_auc": min_roc_auc,
             "max_rows_compared": max_rows, "batches": rows}  # fmt: skip
    return Monitored(rows, tests, drift.summary_frame(rows))


def monitoring_page(result: Monitored, drift_threshold: float) -> str:
    """The monitoring summary: counts, plots over batches, and a table linking every report."""
    summary, rows = result.summary, result.rows
    real = summary[summary["control"] == ""]
    controls = len(real) < len(summary)
    explained = ("The served model is the champion (or its fallback); the challenger scores the "
                 "same rows in shadow. Reference: the held-out window.")  # fmt: skip
    if controls:
        explained += (" Control batches check the monitoring itself: 'same' is drawn from the "
                      "reference and should pass, 'shifted' has every numeric feature moved by "
                      "one standard deviation and must fail.")  # fmt: skip
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
        html.figure(drift.plot_over_batches(summary, drift_threshold)),
        html.heading("Batches (each links to its evidently report)"),
        html.table(
            summary.assign(
                reasons=["; ".join(r["reasons"]) for r in rows],
                warnings=["; ".join(r["warnings"]) for r in rows],
            ).drop(columns=[] if controls else ["control"]),  # fmt: skip
            {"pass": "pass", "fail": "fail", "True": "fail"},
            links={"batch": [r["report"] for r in rows]},
        ),
        html.para(explained),
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
