"""Live performance: the request archive joined to the labels that arrived after the answers.

Per window of answer time, every model that scored the labelled records is judged on them with
95 % intervals: the champion and the fallback on the records each answered, and every shadow
on every record it scored. Each shadow is also set against the champion on the very records
both scored (DeLong's paired difference): the evidence a promotion rests on. An online
experiment's canary is judged on the records it answered, and its sequential test's decision
is shown with the labels each arm has and how many more it needs (`nbmlops.abtest`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import abtest, html
from ..metrics import intervals
from ..records import KEY, OUTCOME, read_archive, read_labels
from ..settings import ExperimentSettings

SERVED = "served_proba"


@dataclass
class Live:
    """What the archive and its labels say: counts, per-window figures, paired differences."""

    counts: dict
    models: pd.DataFrame  # window, model, rows, positives, metrics with intervals
    paired: pd.DataFrame  # window, shadow, rows, difference with interval, p-value
    experiments: pd.DataFrame  # canary against champion: decision, labels per arm, figures


def _shadows(archive: pd.DataFrame) -> list[str]:
    """The shadow aliases the archive holds a column of scores for (`ALIAS_proba`)."""
    return [c.removesuffix("_proba") for c in archive.columns
            if c.endswith("_proba") and c != SERVED]  # fmt: skip


def _figures(window: str, model: str, y: np.ndarray, p: np.ndarray) -> dict:
    row = {"window": window, "model": model, "rows": len(y), "positives": int(y.sum())}
    for name, estimate in intervals.ESTIMATORS.items():
        found = estimate(y, p)
        row |= {name: found.value, f"{name}_low": found.low, f"{name}_high": found.high}
    return row


def live_performance(archive: pd.DataFrame, labels: pd.DataFrame, period: str = "D",
                     contradicting: int = 0,
                     experiment: ExperimentSettings | None = None) -> Live:  # fmt: skip
    """Every model's figures per window of `period` (pandas period codes) and over all, and
    each online experiment's test under `experiment`'s rules (the env's, or the defaults)."""
    rules = experiment or ExperimentSettings.from_params({"share": 0})
    tests = pd.DataFrame([e.summary() for e in abtest.experiments(archive, labels, rules)])
    joined = archive.merge(labels[[*KEY, OUTCOME]], on=KEY, how="inner")
    joined[OUTCOME] = joined[OUTCOME].astype(int)
    known = set(map(tuple, archive[KEY].astype({"record": int}).to_numpy().tolist()))
    counts = {"answered": len(archive), "labels": len(labels), "labelled": len(joined),
              "labels_without_a_record": int(sum(
                  (str(r), int(i)) not in known for r, i in labels[KEY].itertuples(index=False))),
              "contradicting_labels": contradicting}  # fmt: skip
    if joined.empty:
        return Live(counts, pd.DataFrame(), pd.DataFrame(), tests)
    when = pd.to_datetime(joined["received_at"], utc=True).dt.tz_convert(None)
    joined["window"] = when.dt.to_period(period).astype(str)
    models, paired = [], []
    groups = [("all", joined)] + list(joined.groupby("window", sort=True))
    for window, rows in groups:
        for (role, version), served in rows.groupby(["served_role", "served_version"], sort=True):
            models.append(_figures(window, f"{role} v{version}", served[OUTCOME].to_numpy(),
                                   served[SERVED].to_numpy()))  # fmt: skip
        champion = rows["served_role"] == "champion"
        for alias in _shadows(rows):
            scored = rows[f"{alias}_proba"].notna()
            for version, part in rows[scored].groupby(f"{alias}_version", sort=True):
                models.append(_figures(window, f"{alias} v{version} (shadow)",
                                       part[OUTCOME].to_numpy(),
                                       part[f"{alias}_proba"].to_numpy(float)))  # fmt: skip
            pairs = rows[scored & champion].groupby(["served_version", f"{alias}_version"])
            for (version, shadow), both in pairs:  # one pair of versions at a time
                d = intervals.roc_auc_difference(both[OUTCOME], both[SERVED],
                                             both[f"{alias}_proba"].astype(float))  # fmt: skip
                paired.append({"window": window, "champion": f"v{version}",
                               "shadow": f"{alias} v{shadow}", "rows": d.rows,
                               "champion_roc_auc": d.a, "shadow_roc_auc": d.b,
                               "difference": d.difference, "low": d.low, "high": d.high,
                               "p_value": d.p_value})  # fmt: skip
    return Live(counts, pd.DataFrame(models), pd.DataFrame(paired), tests)


def read_live(folder, period: str = "D", experiment: ExperimentSettings | None = None) -> Live:
    """`live_performance` of an archive folder and its labels file."""
    labels, contradicting = read_labels(folder)
    return live_performance(read_archive(folder), labels, period, contradicting, experiment)


def _interval(row, name: str) -> str:
    if math.isnan(row[name]):
        return ""
    return f"{row[name]:.4f} [{row[f'{name}_low']:.4f}, {row[f'{name}_high']:.4f}]"


def live_page(live: Live, title: str = "Live performance", home: str = "../index.html") -> str:
    """The page: counts, each model per window with its intervals, and the paired evidence."""
    body = [html.cards(live.counts)]
    if live.models.empty:
        body.append(html.para("No answered record has a label yet: send outcomes to "
                              "POST /feedback."))  # fmt: skip
        return html.page(title, "".join(body), home=home)
    shown = live.models.assign(**{name: [_interval(r, name) for _, r in live.models.iterrows()]
                                  for name in intervals.ESTIMATORS})  # fmt: skip
    body += [
        html.heading("Each model on the labelled records it scored (95 % intervals)"),
        html.table(shown[["window", "model", "rows", "positives", *intervals.ESTIMATORS]]),
        html.para(
            "The champion and the fallback are judged on the records each answered; "
            "a shadow on every record it scored. ROC AUC by DeLong's interval, PR AUC by "
            "Boyd's, Brier by the normal approximation."
        ),  # fmt: skip
    ]
    if not live.experiments.empty:
        body += [
            html.heading("Online experiments: the canary against the champion"),
            html.table(live.experiments),
            html.para(
                "The loss difference is the champion's mean loss minus the canary's (above 0: "
                "the canary is better), with its always-valid interval (mSPRT): the decision "
                "may be read after every label. labels_needed is how many more labels, at "
                "today's split, would stop the test if today's figures held."
            ),  # fmt: skip
        ]
    if not live.paired.empty:
        body += [
            html.heading("Shadow minus champion on the same records (DeLong, paired)"),
            html.table(live.paired),
            html.para(
                "A difference whose interval lies wholly above 0 is evidence that the "
                "shadow ranks better on live traffic; wholly below, worse."
            ),  # fmt: skip
        ]
    return html.page(title, "".join(body), home=home)
