"""Monitor batches with the served model: drift, performance and the shadow challenger per batch.

The monitor task's logic: it takes the build's data and the scores, writes one evidently report
per batch into the folder it is given, and returns the rest for the task to write.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import html, session
from ..errors import ConfigError, DataError, Problem
from ..metrics.scores import CHUNK_ROWS, PROBA, scored_frame
from ..spec import BATCH, PERIOD, REFERENCE, TRAINING, FeatureSpec
from . import drift, estimate, scoring, stream, verdict


def latest(index: dict[str, tuple[int, str]], last: int) -> list[str]:
    """The newest `last` real batches and the control batches of a batch index
    (`stream.batch_index`), in file order; every batch when `last` is 0."""
    real = [name for name, (_, control) in index.items() if not control]
    chosen = set(real[-last:] if last > 0 else real)
    return [name for name, (_, control) in index.items() if control or name in chosen]


def known_categories(train: pd.DataFrame, spec: FeatureSpec) -> dict[str, set]:
    """Per categorical feature, the values training saw."""
    return {col: set(train[col].dropna()) for col in spec.categorical}


def unseen_categories(known: dict[str, set], batch: pd.DataFrame) -> dict:
    """Per categorical feature with values outside `known`: the rows holding them, and the
    20 commonest with counts."""
    return stream.unseen_summary(stream.count_unseen(known, batch))


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


class Rolling:
    """The last `periods` windows before a batch, each kept as its row count and a uniform
    sample of at most `max_rows` scored rows (every row when `max_rows` is 0), so a rolling
    reference costs samples, not batches."""

    def __init__(self, periods: int, max_rows: int):
        self.windows: deque[tuple[str, int, pd.DataFrame]] = deque(maxlen=periods)
        self.max_rows = max_rows

    def add_periods(self, frame: pd.DataFrame, proba: np.ndarray, threshold: np.ndarray,
                    spec: FeatureSpec) -> None:  # fmt: skip
        """Each period of a window held in memory (training, held-out), in time order, with
        the served model's probabilities and decision thresholds of its rows."""
        for period, rows in frame.groupby(PERIOD, sort=True):
            at = frame.index.get_indexer(rows.index)
            scored = scored_frame(rows, spec, proba[at], threshold[at])
            self.add(str(period), len(rows), drift.sample_rows(scored, self.max_rows))

    def add(self, name: str, rows: int, sample: pd.DataFrame) -> None:
        self.windows.append((name, rows, sample))

    def reference(self, seed: int = 0) -> tuple[str, int, pd.DataFrame]:
        """(a description, rows, scored rows): a uniform sample of every row of the windows,
        each window giving its share of the rows."""
        names, sizes = [w[0] for w in self.windows], np.array([w[1] for w in self.windows])
        frames = [w[2] for w in self.windows]
        total = int(sizes.sum())
        if 0 < self.max_rows < total:
            share = sizes * self.max_rows / total
            take = np.floor(share).astype(int)
            take[np.argsort(take - share)[: self.max_rows - take.sum()]] += 1
            frames = [
                f.sample(n=int(k), random_state=seed) for f, k in zip(frames, take, strict=True)
            ]
        said = f"the {len(names)} periods before it ({names[0]} to {names[-1]})"
        return said, total, pd.concat(frames, ignore_index=True)


def monitor_batches(
    scores: str | Path,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    batches: str | Path,
    shadow: list[dict],
    spec: FeatureSpec,
    report_dir: Path,
    linked_as: str,
    rules: verdict.MonitorRules,
    reference: str = "holdout",
    rolling_periods: int = 3,
    max_rows: int = 0,
    last: int = 0,
    chunk_rows: int = CHUNK_ROWS,
    assets: Path | None = None,
) -> Monitored:
    """One evidently report per batch, written into `report_dir`; returns every batch's figures.

    `batches` is the build's batch file and `scores` the score task's, both read in chunks of
    `chunk_rows` rows: memory is bounded by the chunk and `max_rows`, not by the batch.
    `shadow` is the score task's summary per window. The newest `last` batches (every one when
    0) and the control batches are monitored. Pages link the reports as `linked_as/batch-NAME.html`;
    the reports load evidently's scripts from `assets` (the project's shared folder).

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
    index = stream.batch_index(batches, chunk_rows)
    names = latest(index, last)
    _check_scored(scores, batches, stream.batch_index(scores, chunk_rows),
                  {REFERENCE: len(holdout)} | {n: index[n][0] for n in names})  # fmt: skip
    proba = {REFERENCE: scoring.served(scores, REFERENCE)}  # (probability, threshold) per row
    if reference in ("train", "rolling"):
        proba[TRAINING] = scoring.served(scores, TRAINING)
        if len(proba[TRAINING][0]) != len(train):
            raise ConfigError(
                f"monitor_reference {reference!r} needs the training window scored; "
                "the score task scores it when monitor_reference is not 'holdout'"
            )
    shadow_rows = {str(row["batch"]): row for row in shadow}
    held = verdict.held_out(holdout[spec.target], proba[REFERENCE][0])

    def whole(said: str, rows: pd.DataFrame, p: tuple[np.ndarray, np.ndarray]) -> tuple:
        scored = scored_frame(rows, spec, *p)
        return said, len(rows), drift.sample_rows(scored, max_rows)

    held_out = whole("the held-out window", holdout, proba[REFERENCE])
    training = (
        whole("the training window", train, proba[TRAINING]) if reference == "train" else None
    )
    rolling = Rolling(rolling_periods, max_rows)
    if reference == "rolling":
        rolling.add_periods(train, *proba[TRAINING], spec)
        rolling.add_periods(holdout, *proba[REFERENCE], spec)
    seeds = {name: i for i, name in enumerate(names, 1)}
    back = "../" * len(Path(linked_as).parts) + "index.html"  # the summary, from a batch page
    known = known_categories(train, spec)
    taken = stream.batches(batches, spec, names, index, max_rows, seeds, known, scores, chunk_rows)
    rows = []
    for i, (name, batch) in enumerate(taken, 1):
        start = time.perf_counter()
        control = index[name][1]
        if control or reference == "holdout":
            compared_with, ref_rows, ref = held_out
        elif reference == "train":
            compared_with, ref_rows, ref = training
        else:
            compared_with, ref_rows, ref = rolling.reference()
        row = {"batch": name, "control": control, "rows": batch.rows,
               "report": f"{linked_as}/batch-{name}.html",
               "reference": compared_with, "reference_rows": ref_rows}  # fmt: skip
        row |= assess(ref, batch, spec, held, rules, report_dir / f"batch-{name}.html", back,
                      assets)  # fmt: skip
        row |= {k: v for k, v in shadow_rows[name].items() if k not in ("rows", "batch")}
        for window in (name, REFERENCE):
            served_by = shadow_rows.get(window, {}).get("served_by", "")
            if "," in served_by:  # the champion failed part-way and its fallback took over
                row["warnings"].append(
                    f"the {'held-out window' if window == REFERENCE else 'batch'} "
                    f"was served by {served_by}: its figures mix both models"
                )
                for said in (row, row["before_labels"]):
                    said["status"] = "warn" if said["status"] == "pass" else said["status"]
        rows.append(row)
        if not control:
            rolling.add(name, batch.rows, batch.sample)
        for warning in row["warnings"]:
            print(f"warning: batch {name}: {warning}", flush=True)
        print(
            f"[{i}/{len(names)}] batch {name}: {batch.rows} rows, drift share "
            f"{row['drift_share']:.2f}, disagreement {row['disagreement']:.3f}, {row['status']} "
            f"({time.perf_counter() - start:.1f}s)",
            flush=True,
        )
    tests = {"build_id": session.build_id(), "rules": asdict(rules), "reference": reference,
             "estimate_coverage": estimate.coverage([r for r in rows if not r["control"]]),
             "rolling_periods": rolling_periods if reference == "rolling" else None,
             "held_out": held, "max_rows_compared": max_rows, "batches": rows}  # fmt: skip
    return Monitored(rows, tests, drift.summary_frame(rows))


def _check_scored(scores, batches, scored: dict, expected: dict[str, int]) -> None:
    """The scores file holds as many rows of each window as the windows have: else the scores
    are not of these rows, and no figure made of them is."""
    for name, rows in expected.items():
        found = scored.get(name, (0, ""))[0]
        if found != rows:
            where = "the held-out window" if name == REFERENCE else Path(batches).name
            said = f"{found} scores for {name!r}, which has {rows} rows in {where}; score again"
            raise DataError(Problem(str(scores), BATCH, said))


def assess(
    reference: pd.DataFrame,
    batch: stream.Streamed,
    spec: FeatureSpec,
    held: dict,
    rules: verdict.MonitorRules,
    report: Path | None = None,
    summary: str = "../index.html",
    assets: Path | None = None,
) -> dict:
    """One batch scored by the served model (`stream.Streamed`: every row's probability and
    label as counts, a sample of scored rows, the values training never saw), against a scored
    `reference`: its drift (an evidently report written to `report`, if given), performance
    and calibration, and the verdict under `rules` against the model's held-out figures
    (`held`): status, reasons and warnings. The report links back to `summary` and loads
    evidently's scripts from `assets`."""
    row = {"rows_compared": len(batch.sample)}
    row |= drift.batch_report(reference, batch.sample, spec, report, rules.drift_share,
                              rules.drift_fdr, summary, assets)  # fmt: skip
    found, warnings, counted = None, [], batch.tally
    if counted.both_classes:
        row |= counted.metrics()
        row |= counted.calibration()
        found = counted.estimates()
        row["intervals"] = {k: [e.low, e.high] for k, e in found.items()}
        row["roc_auc_binning_error"] = counted.roc_auc_error()
    elif counted.labelled:
        warnings.append(
            f"{spec.target}: every label is {counted.only_label}, so ROC AUC and PR AUC are not "
            "defined for this batch; its performance is not judged"
        )
    if len(batch.sample):  # labels expected by the held-out window's calibration
        served, fit = batch.sample[PROBA], held.get("recalibration")
        expected = estimate.estimate(served, fit)
        row["expected_positive_rate"] = float(estimate.recalibrated(served, fit).mean())
    else:
        expected = {}
    row["estimated"] = {k: [e.value, e.low, e.high] for k, e in expected.items()}
    unseen = batch.unseen
    judged = verdict.judge(row | {"rows": batch.rows}, rules, held, found, unseen,
                           expected if found is None else None)  # fmt: skip
    # what the batch showed before its labels arrived: drift, unseen values, the estimates
    before = judged if found is None else verdict.judge(row | {"rows": batch.rows}, rules, held,
                                                        None, unseen, expected)  # fmt: skip
    return row | {"status": judged.status, "reasons": judged.reasons,
                  "warnings": judged.warnings + warnings, "unseen_categories": unseen,
                  "before_labels": {"status": before.status, "reasons": before.reasons,
                                    "warnings": before.warnings}}  # fmt: skip


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


def estimated_said(coverage: dict) -> str:
    """What the estimates before labels were worth on the batches whose labels came."""
    said = ("Each batch's ROC AUC, PR AUC and Brier are also estimated from the served model's "
            "probabilities alone (estimated_*: what a batch shows before its labels arrive; an "
            "estimated drop beyond a line is a warning).")  # fmt: skip
    if not coverage:
        return said + " No labelled batch to check them against yet."
    found = "; ".join(f"{m} inside the estimate's 95 % interval in {c['inside']:.0%} of "
                      f"{c['batches']} labelled batches, mean absolute error "
                      f"{c['mean_absolute_error']:.3f}" for m, c in coverage.items())  # fmt: skip
    return f"{said} Against the labels: {found}."


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
    found = verdict.summary(rows)
    first = next((b for b in reversed(verdict.real_batches(rows)) if b["reasons"]), None)
    parts = [found.text] + ([f"last failure: {first['batch']}: {first['reasons'][0]}"]
                            if first else [])  # fmt: skip
    status_classes = {"pass": "pass", "fail": "fail", "warn": "warn"}
    verdicts = pd.DataFrame({
        "batch": [r["batch"] for r in rows], "status": [r["status"] for r in rows],
        "reasons": ["; ".join(r["reasons"]) for r in rows],
        "warnings": ["; ".join(r["warnings"]) for r in rows]})  # fmt: skip
    body = [
        html.verdict(found.status, parts),
        html.heading("Batches: the verdict of each (the batch links to its evidently report)"),
        html.table(
            verdicts,
            status_classes,
            links={"batch": [r["report"] for r in rows]},
            wrap=("reasons", "warnings"),
        ),  # fmt: skip
        html.details(
            "Every batch's figures",
            html.table(
                summary.drop(columns=[] if controls else ["control"]),
                status_classes | {"True": "warn"},
                links={"batch": [r["report"] for r in rows]},
            ),  # fmt: skip
        ),
        html.para(explained),
        html.para(estimated_said(tests.get("estimate_coverage", {}))),
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
