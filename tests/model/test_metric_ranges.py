"""Model tests: metrics of the CI build stay inside committed ranges.

The candidates are the ones env.ci.yaml declares: a candidate added without a committed range
is held to better than chance and named in a warning saying what to add; a range of a
candidate no longer declared is named in a warning and checks nothing.
"""

import warnings
from pathlib import Path

import pytest
import yaml

from nbmlops import storage
from nbmlops.layout import Layout
from tests.conftest import PROJECT

pytestmark = [pytest.mark.pipeline, pytest.mark.xdist_group("build")]
RANGES_FILE = Path(__file__).parent / "metric_ranges.yaml"
RANGES = yaml.safe_load(RANGES_FILE.read_text())
DECLARED = [c["name"] for c in Layout.from_env(PROJECT / "env.ci.yaml").candidates]


@pytest.mark.parametrize("model", DECLARED)
def test_candidate_metrics_in_range(ci_build, model):
    got = storage.read_json(ci_build.reports / "metrics.json")["candidates"][model]
    ranges = RANGES["candidates"].get(model)
    if ranges is None:
        lines = ", ".join(f"{m}: [{got[m] - 0.03:.2f}, {got[m] + 0.03:.2f}]"
                          for m in ("roc_auc", "pr_auc", "brier"))  # fmt: skip
        warnings.warn(f"{RANGES_FILE.name} has no range for candidate {model!r}; once its "
                      f"figures are reviewed, add `{model}: {{{lines}}}`", stacklevel=1)  # fmt: skip
        assert got["roc_auc"] > 0.5, f"{model} ranks no better than chance: {got['roc_auc']:.4f}"
        return
    for metric, (low, high) in ranges.items():
        assert low <= got[metric] <= high, (
            f"{model} {metric} = {got[metric]:.4f} not in [{low}, {high}]"
        )


def test_every_range_is_a_range_of_a_known_metric():
    """Each range is [low, high] of a metric the build reports; a range of a candidate no
    longer declared is named in a warning."""
    for model in sorted(set(RANGES["candidates"]) - set(DECLARED)):
        warnings.warn(f"{RANGES_FILE.name}: candidate {model!r} is not declared in env.ci.yaml; "
                      "its range checks nothing (remove it)", stacklevel=1)  # fmt: skip
    known = {"roc_auc", "pr_auc", "brier", "f1", "precision", "recall", "accuracy", "log_loss"}
    for model, ranges in RANGES["candidates"].items():
        for metric, bounds in ranges.items():
            assert metric in known, f"{RANGES_FILE.name}: {model}: unknown metric {metric!r}"
            low, high = bounds
            assert low < high, f"{RANGES_FILE.name}: {model} {metric}: [{low}, {high}] is empty"


def test_monitored_batches_in_range(ci_build):
    low, high = RANGES["monitoring"]["roc_auc"]
    tests = storage.read_json(ci_build.reports / "monitoring" / "tests.json")
    for batch in tests["batches"]:
        assert low <= batch["roc_auc"] <= high, (batch["batch"], batch["roc_auc"])
