"""Monitor batches with the served model: drift, performance and the shadow challenger per batch.

The monitor task's logic: it takes the build's data and the scores, writes one evidently report
per batch into the folder it is given, and returns the rest for the task to write.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import html, metrics
from ..errors import ConfigError
from ..spec import BATCH, CONTROL, PERIOD, FeatureSpec
from . import drift, scoring, verdict


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
    """Per categorical feature with values outside `known`: the rows holding them, and the
    20 commonest with counts."""
    found = {}
    for col, seen in known.items():
        new = batch[col].dropna()
        new = new[~new.isin(seen)]
        if len(new):
            top = new.value_counts().head(20)
            found[col] = {"rows": len(new), "values": {str(k): int(v) for k, v in top.items()}}
    return found


#: What each batch is compared with for drift (`monitor_reference`).
REFERENCES = ("holdout", "train", "rolling")


@dataclass
class Monitored:
    """One row per batch, in batch order; the tests record; the summary table."""

    rows: list[dict]
    tests: dict
    summary: pd.DataFrame


def check_reference(reference: str, rolling_periods: int) -> None:
    if reference not in REFERENCES:
        raise ConfigError(f"monitor_reference is {reference!r}; use one of {', '.join(REFERENCES)}")
    if reference == "rolling" and (
        isinstance(rolling_periods, bool)
        or not isinstance(rolling_periods, int)
        or rolling_periods < 1
    ):
        raise ConfigError(f"monitor_rolling_periods must be a whole number of at least 1, "
                          f"not {rolling_periods!r}")  # fmt: skip


def history(
    train: pd.DataFrame, holdout: pd.DataFrame, batches: pd.DataFrame, proba: dict[str, np.ndarray]
) -> list[tuple[str, pd.DataFrame, np.ndarray]]:
    """Every window in time order, with the served model's scores: the training window's and
    the held-out window's periods, then each real batch. A rolling reference is the last N
    windows before a batch."""
    windows = []
    for name, frame in ((scoring.TRAINING, train), (scoring.REFERENCE, holdout)):
        if name not in proba:
            continue
        for period, rows in frame.groupby(PERIOD, sort=True):
            windows.append((str(period), rows, proba[name][frame.index.get_indexer(rows.index)]))
    for name, rows in batches[batches[CONTROL] == ""].groupby(BATCH, sort=False):
        windows.append((str(name), rows, proba[name]))
    return windows


def reference_for(
    name: str,
    control: str,
    reference: str,
    rolling_periods: int,
    windows: list,
    holdout: tuple,
    train: tuple | None,
) -> tuple[str, tuple]:
    """(a description, (rows, scores)) of what batch `name` is compared with. Control batches
    are always compared with the held-out window they were drawn from."""
    if control or reference == "holdout":
        return "the held-out window", holdout
    if reference == "train":
        return "the training window", train
    names = [w[0] for w in windows]
    before = windows[max(0, names.index(name) - rolling_periods) : names.index(name)]
    rows = pd.concat([w[1] for w in before])
    return (f"the {len(before)} periods before it ({before[0][0]} to {before[-1][0]})",
            (rows, np.concatenate([w[2] for w in before])))  # fmt: skip


def monitor_batches(
    scores: pd.DataFrame,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    batches: pd.DataFrame,
    spec: FeatureSpec,
    report_dir: Path,
    linked_as: str,
    rules: verdict.MonitorRules,
    reference: str = "holdout",
    rolling_periods: int = 3,
    max_rows: int = 0,
) -> Monitored:
    """One evidently report per batch, written into `report_dir`; returns every batch's figures.

    Pages link the reports as `linked_as/batch-NAME.html`.

    Each batch's drift is measured against `reference` (the held-out window, the training
    window, or the `rolling_periods` windows before it); its performance and calibration
    against the served model's figures on the held-out window, under `rules`
    (`verdict.judge` says what fails and what warns). Batches (and references) larger than
    `max_rows` are compared on a uniform sample of that many rows; performance metrics always
    use every row.

    The served model's scores (champion, or its fallback) are what is monitored; the shadow
    challenger's disagreement and metrics sit beside them.
    """
    check_reference(reference, rolling_periods)
    served = scores.groupby(BATCH, sort=False)
    proba = {name: group["served_proba"].to_numpy() for name, group in served}
    if reference in ("train", "rolling") and scoring.TRAINING not in proba:
        raise ConfigError(
            f"monitor_reference {reference!r} needs the training window scored; "
            "the score task scores it when monitor_reference is not 'holdout'"
        )
    shadow_rows = scoring.summarize(scores, spec).set_index("batch").to_dict(orient="index")
    held = verdict.held_out(holdout[spec.target], proba[scoring.REFERENCE])
    windows = history(train, holdout, batches, proba) if reference == "rolling" else []
    known = known_categories(train, spec)
    groups = list(batches.groupby(BATCH, sort=False))
    rows = []
    for i, (name, batch) in enumerate(groups, 1):
        start = time.perf_counter()
        control = str(batch[CONTROL].iloc[0])
        compared_with, (ref_rows, ref_proba) = reference_for(
            str(name), control, reference, rolling_periods, windows,
            (holdout, proba[scoring.REFERENCE]), (train, proba.get(scoring.TRAINING)),
        )  # fmt: skip
        ref = drift.sample_rows(metrics.scored_frame(ref_rows, spec, ref_proba), max_rows)
        row = {"batch": str(name), "control": control, "rows": len(batch),
               "report": f"{linked_as}/batch-{name}.html",
               "reference": compared_with, "reference_rows": len(ref_rows)}  # fmt: skip
        row |= assess(ref, batch, proba[name], spec, held, known, rules,
                      report_dir / f"batch-{name}.html", max_rows, seed=i)  # fmt: skip
        row |= {k: v for k, v in shadow_rows[name].items() if k != "rows"}
        rows.append(row)
        for warning in row["warnings"]:
            print(f"warning: batch {name}: {warning}", flush=True)
        print(
            f"[{i}/{len(groups)}] batch {name}: {len(batch)} rows, drift share "
            f"{row['drift_share']:.2f}, disagreement {row['disagreement']:.3f}, {row['status']} "
            f"({time.perf_counter() - start:.1f}s)",
            flush=True,
        )
    tests = {"rules": asdict(rules), "reference": reference,
             "rolling_periods": rolling_periods if reference == "rolling" else None,
             "held_out": held, "max_rows_compared": max_rows, "batches": rows}  # fmt: skip
    return Monitored(rows, tests, drift.summary_frame(rows))


def assess(
    reference: pd.DataFrame,
    batch: pd.DataFrame,
    proba: np.ndarray,
    spec: FeatureSpec,
    held: dict,
    known: dict[str, set],
    rules: verdict.MonitorRules,
    report: Path | None = None,
    max_rows: int = 0,
    seed: int = 0,
) -> dict:
    """One batch scored by the served model (`proba`), against a scored `reference`: its drift
    (an evidently report written to `report`, if given), performance, calibration and values
    training never saw (`known`), and the verdict under `rules` against the model's held-out
    figures (`held`): status, reasons and warnings."""
    compared = drift.sample_rows(metrics.scored_frame(batch, spec, proba), max_rows, seed=seed)
    row = {"rows_compared": len(compared)}
    row |= drift.batch_report(reference, compared, spec, report, rules.drift_share)
    found, warnings = None, []
    if drift.both_classes(batch, spec):
        y = batch[spec.target]
        row |= metrics.classification_metrics(y, proba)
        row |= verdict.calibration(y, proba)
        found = verdict.estimates(y, proba)
        row["intervals"] = {k: [e.low, e.high] for k, e in found.items()}
    elif drift.has_labels(batch, spec):
        only = int(batch[spec.target].iloc[0])
        warnings.append(
            f"{spec.target}: every label is {only}, so ROC AUC and PR AUC are not defined "
            "for this batch; its performance is not judged"
        )
    unseen = unseen_categories(known, batch)
    judged = verdict.judge(row | {"rows": len(batch)}, rules, held, found, unseen)
    return row | {"status": judged.status, "reasons": judged.reasons,
                  "warnings": judged.warnings + warnings, "unseen_categories": unseen}  # fmt: skip


def calibration_plot(rows: list[dict], held: dict):
    """Left: observed rate and mean predicted probability by batch. Right: each labelled
    batch's reliability curve beside the held-out window's."""
    import matplotlib.pyplot as plt

    real = [r for r in rows if not r["control"] and "reliability" in r]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    if real:
        x = range(len(real))
        axes[0].plot(x, [r["observed_rate"] for r in real], "o-", label="observed rate")
        axes[0].plot(x, [r["mean_proba"] for r in real], "s--", label="mean predicted")
        axes[0].set_xticks(list(x), [r["batch"] for r in real], rotation=45, ha="right")
    axes[0].axhline(held["positive_rate"], color="grey", ls=":", label="held-out observed rate")
    axes[0].axhline(held["mean_proba"], color="grey", ls="-.", label="held-out mean predicted")
    axes[0].set_title("Calibration in the large, by batch")
    cmap = plt.get_cmap("viridis")
    for k, r in enumerate(real):
        curve = np.array(r["reliability"])
        axes[1].plot(curve[:, 0], curve[:, 1], "-", color=cmap(k / max(len(real) - 1, 1)),
                     lw=1, alpha=0.8, label=r["batch"] if len(real) <= 12 else None)  # fmt: skip
    curve = np.array(held["reliability"])
    axes[1].plot(curve[:, 0], curve[:, 1], "k-", lw=2.5, label="held-out")
    axes[1].plot([0, 1], [0, 1], color="grey", ls="--", lw=1)
    axes[1].set_xlabel("mean predicted probability (decile)")
    axes[1].set_ylabel("observed rate")
    axes[1].set_title("Reliability per batch")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    plt.close(fig)
    return fig


def monitoring_page(result: Monitored) -> str:
    """The monitoring summary: counts, plots over batches, and a table linking every report."""
    summary, rows, tests = result.summary, result.rows, result.tests
    rules, held = tests["rules"], tests["held_out"]
    real = summary[summary["control"] == ""]
    controls = len(real) < len(summary)
    reference = {
        "holdout": "the held-out window",
        "train": "the training window",
        "rolling": f"the {tests['rolling_periods']} periods before each batch",
    }
    regressions = ", ".join(f"{m} by {r:g}" for m, r in rules["max_regression"].items())
    explained = (
        "The served model is the champion (or its fallback); the challenger scores the same rows "
        f"in shadow. Drift is measured against {reference[tests['reference']]}. A batch fails "
        f"when more than {rules['drift_share']:.0%} of the model's features drift, or when its "
        f"labelled performance falls below the held-out window's ({regressions}; PR AUC and "
        "Brier scaled to the batch's positive rate) with its whole 95 % interval beyond the "
        "line. Prediction drift, a moved calibration, unseen category values and a shortfall "
        "within the interval are warnings."
    )
    if controls:
        explained += (" Control batches check the monitoring itself: 'same' is drawn from the "
                      "held-out window and should pass, 'shifted' has every numeric feature "
                      "moved by one standard deviation and must fail.")  # fmt: skip
    body = [
        html.cards(
            {
                "served by": ", ".join(sorted(set(real["served_by"]))),
                "batches": len(real),
                "failing": int((real["status"] == "fail").sum()),
                "warning": int((real["status"] == "warn").sum()),
                "max drift share": float(real["drift_share"].max()) if len(real) else 0.0,
                "held-out ROC AUC": held["metrics"]["roc_auc"],
            }
        ),
        html.figure(drift.plot_over_batches(summary, rules["drift_share"])),
        html.heading("Batches (each links to its evidently report)"),
        html.table(
            summary.assign(
                reasons=["; ".join(r["reasons"]) for r in rows],
                warnings=["; ".join(r["warnings"]) for r in rows],
            ).drop(columns=[] if controls else ["control"]),  # fmt: skip
            {"pass": "pass", "fail": "fail", "warn": "warn", "True": "warn"},
            links={"batch": [r["report"] for r in rows]},
        ),
        html.para(explained),
        html.heading("Calibration: predicted against observed"),
        html.figure(calibration_plot(rows, held)),
        html.para(
            "Where the observed rate leaves the predicted one, the model's probabilities no "
            "longer mean what they say: thresholds set on them act differently, and a retrained "
            "(or recalibrated) model is due. A move of the observed-minus-predicted gap by more "
            f"than {rules['calibration_shift']:g} × the held-out positive rate is a warning."
        ),
    ]
    unseen = [{"batch": r["batch"], "column": col, "value": value, "rows": n}
              for r in rows for col, found in r["unseen_categories"].items()
              for value, n in found["values"].items()]  # fmt: skip
    if unseen:
        body += [
            html.heading(
                "Category values training never saw (a warning past unseen_share of the rows)"
            ),
            html.table(pd.DataFrame(unseen)),
            html.para(
                "The models encode these values as unknown. If they keep coming, retrain "
                "on data that has them."
            ),  # fmt: skip
        ]
    return html.page("Monitoring summary", "".join(body), home="../index.html")
