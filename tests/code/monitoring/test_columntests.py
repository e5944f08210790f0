"""Drift tests that hold on a table in random row order: values the reference lacks, coded
numbers, and many columns at once flag no more than a correct test would, and a real move
is still found."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency

from nbmlops.metrics.scores import scored_frame
from nbmlops.monitoring import columntests
from nbmlops.monitoring import drift as monitoring
from nbmlops.spec import FeatureSpec

CODED = [f"code{i}" for i in range(30)]
NUMBERS = [f"x{i}" for i in range(6)]
CATEGORIES = [f"c{i}" for i in range(4)]
SPEC = FeatureSpec("y", CODED + NUMBERS, CATEGORIES)


def _table(rows: int, seed: int) -> pd.DataFrame:
    """40 columns as a coded insurance table has them: codes 0-9 with rare high values, a few
    continuous numbers, categories with a long tail of rare values, and a rare class."""
    rng = np.random.default_rng(seed)
    columns = {c: np.minimum(rng.geometric(0.45, rows) - 1, 9) for c in CODED}
    columns |= {c: rng.gamma(2.0, 10.0, rows) for c in NUMBERS}
    tail = [f"v{k}" for k in range(30)]
    shares = 0.7 ** np.arange(30)
    columns |= {c: rng.choice(tail, rows, p=shares / shares.sum()) for c in CATEGORIES}
    frame = pd.DataFrame(columns)
    proba = 1 / (1 + np.exp(-(0.3 * frame["code0"] - 2 + rng.normal(0, 1, rows))))
    frame["y"] = (rng.random(rows) < proba).astype(int)
    return scored_frame(frame, SPEC, proba.to_numpy())


@pytest.fixture(scope="module")
def table():
    """One table of 1,986 rows in random order: a reference of 486 rows and 5 batches of 300.
    Tested at 5 % each, the 40 columns flag about 2 in every batch by chance."""
    whole = _table(486 + 5 * 300, seed=40)
    return whole.iloc[:486], [whole.iloc[486 + 300 * k : 786 + 300 * k] for k in range(5)]


def test_a_table_in_random_order_flags_no_column_and_warns_of_no_division(table):
    reference, batches = table
    flagged, lacking = [], 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a division by zero in a test fails here
        for batch in batches:
            row = monitoring.batch_report(reference, batch, SPEC, None, 0.5)
            flagged += row["drifted_features"]
            lacking += sum(
                bool(set(batch[c]) - set(reference[c])) for c in CODED + CATEGORIES
            )  # fmt: skip
    assert lacking > 20  # values the reference never had are common in these batches
    assert len(flagged) <= 1, flagged  # 5 batches × 40 columns with no drift in any


def test_a_real_move_is_found_and_the_evidently_page_shows_that_decision(table, tmp_path):
    reference, batches = table
    batch = batches[0].copy()
    rng = np.random.default_rng(41)
    batch["x3"] = batch["x3"] * 1.5  # numbers that grew by half
    batch["code7"] = np.minimum(rng.geometric(0.25, len(batch)) - 1, 9)  # a code's shares moved
    batch["c2"] = rng.choice(["v0", "v1", "v2"], len(batch))  # the tail of a category is gone
    row = monitoring.batch_report(reference, batch, SPEC, tmp_path / "r.html", 0.5)
    assert set(row["drifted_features"]) == {"x3", "code7", "c2"}
    tests = row["drift_tests"]
    assert tests["methods"]["code7"] == tests["methods"]["c2"] == columntests.HOMOGENEITY
    assert tests["methods"]["x3"] == "ks"
    assert all(tests["p_values"][c] <= tests["cutoff"] for c in ("x3", "code7", "c2"))
    page = (tmp_path / "r.html").read_text()
    assert "chi-square homogeneity p_value" in page
    assert "(3 out of 40)" in page


def test_homogeneity_is_the_textbook_test_and_pools_what_is_expected_in_few_rows():
    reference = pd.Series(["a"] * 300 + ["b"] * 150 + ["c"] * 50)
    current = pd.Series(["a"] * 50 + ["b"] * 40 + ["c"] * 9 + ["new"])
    table = np.array([[300, 150, 50], [50, 40, 9]])
    # "new" is expected in 0.17 rows of the batch: it goes to the pooled column (alone here)
    pooled = np.column_stack([table, [0, 1]])
    found = columntests.homogeneity_p(reference, current)
    assert found == pytest.approx(chi2_contingency(pooled, correction=False).pvalue)
    assert found > 0.01  # one row of a new value is no drift
    assert columntests.homogeneity_p(pd.Series(["a"] * 10), pd.Series(["a"] * 5)) == 1.0


def test_benjamini_hochberg_cutoff():
    p = [0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216]
    assert columntests.benjamini_hochberg(p, 0.05) == pytest.approx(0.01)  # 2 discoveries
    assert columntests.benjamini_hochberg([0.2, 0.5], 0.05) == pytest.approx(0.025)  # none
    assert columntests.benjamini_hochberg([0.04, 0.045], 0.05) == pytest.approx(0.05)  # both
