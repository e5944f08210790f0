"""Evidence for a promotion: the challenger against the champion on the same rows, rows that
neither model trained on nor was chosen on.

Held-out metrics of two models compare windows that may differ (a challenger trained later
is held out on a later month, with another base rate). Scored side by side on the same rows,
the two ROC AUCs are correlated and DeLong's paired test measures their difference far more
surely than either alone; the gate file's rules are applied with the champion's metrics on
those rows as the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import abtest
from ..metrics import intervals, sequential
from ..metrics.scores import classification_metrics
from ..records import KEY, OUTCOME, read_archive, read_labels
from ..settings import ExperimentSettings
from ..spec import BATCH, THRESHOLD, period_after
from . import gates

#: Where a version records the periods it was chosen on (a registry tag).
HOLDOUT_TAG = "holdout_window"


@dataclass
class Evidence:
    """The challenger against the champion on `rows` rows of `batches`."""

    source: str
    batches: list[str]
    rows: int
    gate: gates.GateResult | None  # None: too few rows of both classes to judge
    difference: intervals.PairedDifference | None

    @property
    def judged(self) -> bool:
        """Enough rows of both classes to judge on."""
        return self.gate is not None

    @property
    def promotable(self) -> bool:
        return self.gate is not None and self.gate.promotable

    @property
    def worse(self) -> bool:
        """The gates fail on these rows, or the whole interval of the difference is below 0."""
        if self.gate is None:
            return False
        return not self.gate.passed or self.difference.high < 0

    def __str__(self) -> str:
        if self.gate is None and not self.batches and not self.rows:
            return f"no shadow evidence: {self.source}"
        where = f"{self.source}: {self.rows:,} rows"
        if self.batches:
            shown = self.batches if len(self.batches) <= 4 else [self.batches[0], "…",
                                                                   self.batches[-1]]  # fmt: skip
            where += f" of {len(self.batches)} batch(es) ({', '.join(shown)})"
        if self.gate is None:
            return f"{where}; not enough labelled rows of both classes to compare"
        d = self.difference
        return (f"{where}, scored by both models\nROC AUC champion {d.a:.4f}, challenger "
                f"{d.b:.4f}: difference {d.difference:+.4f} [{d.low:+.4f}, {d.high:+.4f}], "
                f"p = {d.p_value:.2g} (DeLong, paired)\n{self.gate}")  # fmt: skip


def held_out_window(details: dict) -> str:
    """The periods a version was chosen on, from its registry details (`store.version_details`):
    the version's tag, else its run's ("" when neither has it)."""
    return details["tags"].get(HOLDOUT_TAG) or details["run_tags"].get(HOLDOUT_TAG, "")


def window_end(window: str) -> str:
    """The last period of a window tag ("2013-01 … 2013-03" -> "2013-03")."""
    return str(window).split(" … ")[-1].strip()


def compare(y, champion, challenger, gate_spec: dict, source: str, batches: list[str],
            thresholds: tuple = (THRESHOLD, THRESHOLD)) -> Evidence:  # fmt: skip
    """The gates and DeLong's paired difference of two models' scores of the same rows; each
    model decides at its own threshold (`thresholds`: the champion's, the challenger's; one or
    one per row)."""
    y = np.asarray(y)
    if len(y) == 0 or len(np.unique(y)) < 2:
        return Evidence(source, batches, len(y), None, None)
    result = gates.check(
        classification_metrics(y, challenger, np.asarray(thresholds[1])),
        {"metrics": classification_metrics(y, champion, np.asarray(thresholds[0]))},
        gate_spec,
    )
    difference = intervals.roc_auc_difference(y, champion, challenger)
    return Evidence(source, batches, len(y), result, difference)


def shadow_evidence(scores: pd.DataFrame, target: str, batches: list[str], after: list[str],
                    gate_spec: dict) -> Evidence:  # fmt: skip
    """The build's shadow scoring as evidence: the labelled rows of `batches` (real batches,
    in order) later than every period in `after` (the two models' held-out windows), where the
    champion itself answered and the challenger scored beside it.

    Periods compare by when they start and end (`spec.period_after`): a current-batch file
    named by a date inside a held-out window is left out, one named otherwise counts."""
    ends = [window_end(w) for w in after if w]
    later = [b for b in batches if all(period_after(b, end) for end in ends)]
    rows = scores[scores[BATCH].isin(later)]
    usable = (rows[target].notna() & rows["challenger_proba"].notna()
              & (rows["served_role"] == "champion"))  # fmt: skip
    rows = rows[usable]
    used = [b for b in later if b in set(rows[BATCH])]
    where = "shadow scoring of the last build"
    if ends:
        where += f" (batches after {' and '.join(dict.fromkeys(ends))})"
    return compare(rows[target].astype(int), rows["served_proba"], rows["challenger_proba"],
                   gate_spec, where, used,
                   (rows["served_threshold"], rows["challenger_threshold"]))  # fmt: skip


def no_evidence(why: str) -> Evidence:
    return Evidence(why, [], 0, None, None)


def live_evidence(folder, champion: str, challenger: str, gate_spec: dict) -> Evidence:
    """The scoring service's evidence: records the champion answered and the challenger scored
    in shadow (under any alias), joined to the outcomes sent to /feedback."""
    archive = read_archive(folder)
    labels, _ = read_labels(folder)
    source = "live labels of the scoring service"
    if archive.empty or labels.empty:
        return no_evidence(f"{source}: none yet")
    rows = archive.merge(labels[[*KEY, OUTCOME]], on=KEY, how="inner")
    rows = rows[
        (rows["served_role"] == "champion") & (rows["served_version"].astype(str) == champion)
    ]
    for column in [c for c in rows.columns if c.endswith("_version") and c != "served_version"]:
        proba = column.removesuffix("_version") + "_proba"
        mine = rows[(rows[column].astype(str) == challenger) & rows[proba].notna()]
        if len(mine):
            when = pd.to_datetime(mine["received_at"], utc=True).dt.date.astype(str)
            days = [when.min(), when.max()] if when.min() != when.max() else [when.min()]
            return compare(mine[OUTCOME].astype(int), mine["served_proba"],
                           mine[proba].astype(float), gate_spec, source, days)  # fmt: skip
    return no_evidence(f"{source}: no labelled record scored by v{challenger} beside v{champion}")


@dataclass
class ExperimentEvidence:
    """The online experiment's decision on the records each arm answered (`nbmlops.abtest`):
    judged once the sequential test stops, either way, or once the service rolled the canary
    back. It refuses a promotion when it stopped for the champion (worse, or not better by
    `min_gain`) or the canary was rolled back (worse, or too slow)."""

    found: abtest.Experiment
    rolled_back: str | None = None  # why, when the service rolled it back

    @property
    def judged(self) -> bool:
        return self.found.decision != sequential.GO_ON or self.rolled_back is not None

    @property
    def promotable(self) -> bool:
        return self.found.decision == sequential.CHALLENGER and self.rolled_back is None

    @property
    def worse(self) -> bool:
        return (self.found.decision in (sequential.WORSE, sequential.NOT_BETTER)
                or self.rolled_back is not None)  # fmt: skip

    def __str__(self) -> str:
        r, e = self.found.result, self.found
        figures = (f"difference {r.difference:+.4f} [{r.low:+.4f}, {r.high:+.4f}]"
                   if r.low > -float("inf") else "no interval yet")  # fmt: skip
        more = f"; about {r.labels_needed:,} more labels" if r.labels_needed else ""
        back = f"; rolled back by the service: {self.rolled_back}" if self.rolled_back else ""
        return (f"online experiment: canary v{e.canary} against champion v{e.champion}: "
                f"{r.canary.n:,} + {r.champion.n:,} {e.unit} labels, champion's loss minus "
                f"the canary's {figures} (mSPRT, always valid): "
                f"{r.decision}{more}{back}")  # fmt: skip


def experiment_evidence(folder, champion: str, challenger: str,
                        settings: ExperimentSettings) -> ExperimentEvidence | None:  # fmt: skip
    """The experiment of `challenger` as the canary beside `champion`, or None when the
    archive holds none."""
    labels, _ = read_labels(folder)
    found = [e for e in abtest.experiments(read_archive(folder), labels, settings)
             if e.canary == challenger and e.champion == champion]  # fmt: skip
    if not found:
        return None
    return ExperimentEvidence(found[0], abtest.rolled_back(folder, champion, challenger))
