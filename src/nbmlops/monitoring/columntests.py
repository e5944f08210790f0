"""Which drift test each of a batch's columns gets, and how many may say drift by chance.

evidently picks a column's test by the reference's size: up to SMALL rows a p-value test
(Kolmogorov-Smirnov for numbers, chi-square for categories), beyond that a distance with a
threshold of 0.1 (Wasserstein, Jensen-Shannon). Here two of its choices are replaced:

- Its chi-square compares a batch's counts with the reference's frequencies (goodness of fit):
  a value the reference never had is expected in 0 rows, and one row of it makes the statistic
  infinite and p = 0. Categories, and numbers of at most CODES distinct values (codes, scales,
  small counts, on which Kolmogorov-Smirnov's ties make it blind), get a chi-square test of
  homogeneity instead: both windows are samples, a value seen in one of them weighs by its
  rows, and values expected in fewer than 5 rows of either window are pooled, as the test's
  approximation needs. Values training never saw are a finding of their own (`unseen_share`).
  Jensen-Shannon also stays finite, but it is a distance without a p-value, and on a few
  hundred rows its sampling noise alone passes 0.1.
- Each column was tested at 5 %: with 85 columns about 4 flag in every batch by chance. A
  batch's p-value tests are now judged together at a false-discovery rate (`drift_fdr`,
  Benjamini-Hochberg): every column's threshold is the batch's cutoff, so evidently's page
  shows the decision the verdict counts.

Distances (references of more than SMALL rows) measure how far a column moved, not how sure
the move is; their threshold stands.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: Reference rows up to which evidently tests with p-values (its own rule).
SMALL = 1000
#: A numeric column with at most this many distinct values is compared as categories.
CODES = 20
#: Pooled below this many expected rows in a cell (chi-square's approximation).
MIN_EXPECTED = 5
#: The homogeneity test's name in evidently's registry.
HOMOGENEITY = "homogeneity"


@dataclass
class Plan:
    """Per column: the method and threshold evidently is given (absent: evidently's own), the
    p-value of a p-value test, and the batch's Benjamini-Hochberg cutoff."""

    methods: dict[str, str] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    p_values: dict[str, float] = field(default_factory=dict)
    cutoff: float | None = None


def _clean(values: pd.Series) -> pd.Series:
    """The values evidently tests: infinities and missing values left out."""
    return values.replace([-np.inf, np.inf], np.nan).dropna()


def homogeneity_p(reference: pd.Series, current: pd.Series) -> float:
    """Chi-square test of homogeneity of two samples' values, the values expected in fewer
    than MIN_EXPECTED rows of either sample pooled into one; 1.0 when fewer than two remain."""
    from scipy.stats import chi2_contingency

    table = pd.concat([reference.value_counts(), current.value_counts()], axis=1).fillna(0)
    counts = table.to_numpy(dtype=float).T  # 2 × values
    expected = counts.sum(axis=1, keepdims=True) * counts.sum(axis=0) / counts.sum()
    rare = (expected < MIN_EXPECTED).any(axis=0)
    kept = counts[:, ~rare]
    if rare.any():
        kept = np.column_stack([kept, counts[:, rare].sum(axis=1)])
    kept = kept[:, kept.sum(axis=0) > 0]
    if kept.shape[1] < 2:
        return 1.0
    return float(chi2_contingency(kept, correction=False).pvalue)


def _homogeneity(reference: pd.Series, current: pd.Series, feature_type, threshold: float):
    p = homogeneity_p(reference, current)
    return p, p <= threshold


def register() -> None:
    """The homogeneity test in evidently's registry of drift tests (once per process)."""
    from evidently.legacy.calculations.stattests.registry import (
        StatTest,
        _registered_stat_tests,
        register_stattest,
    )
    from evidently.legacy.core import ColumnType

    if HOMOGENEITY in _registered_stat_tests:
        return
    kinds = [ColumnType.Categorical, ColumnType.Numerical]
    test = StatTest(HOMOGENEITY, "chi-square homogeneity p_value", allowed_feature_types=kinds)
    register_stattest(test, default_impl=_homogeneity)


def benjamini_hochberg(p_values: list[float], rate: float) -> float:
    """The cutoff at false-discovery rate `rate`: the p-values at or below it are the
    discoveries. With none, a cutoff below every p-value (rate / m)."""
    ordered = np.sort(np.asarray(p_values, dtype=float))
    m = len(ordered)
    if not m:
        return rate
    steps = rate * np.arange(1, m + 1) / m
    below = np.flatnonzero(ordered <= steps)
    return float(steps[below[-1]]) if len(below) else rate / m


def plan(reference: pd.DataFrame, current: pd.DataFrame, numeric: list[str],
         categorical: list[str], fdr: float) -> Plan:  # fmt: skip
    """Each column's test for `current` against `reference`, as the module says."""
    from scipy.stats import ks_2samp

    found = Plan()
    for column in [*numeric, *categorical]:
        ref, cur = _clean(reference[column]), _clean(current[column])
        if ref.empty or cur.empty or len(ref) > SMALL:
            continue  # a distance (or evidently's own message for an empty column)
        codes = column in categorical or pd.concat([ref, cur]).nunique() <= CODES
        if codes:
            found.methods[column] = HOMOGENEITY
            found.p_values[column] = homogeneity_p(ref, cur)
        else:
            found.methods[column] = "ks"  # evidently's, which decides on p <= threshold
            found.p_values[column] = float(ks_2samp(ref, cur)[1])
    if found.p_values:
        found.cutoff = benjamini_hochberg(list(found.p_values.values()), fdr)
        found.thresholds = dict.fromkeys(found.p_values, found.cutoff)
        register()
    return found
