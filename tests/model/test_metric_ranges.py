"""Model tests: metrics of the CI build stay inside committed ranges."""

from pathlib import Path

import pytest
import yaml

from nbmlops import storage

pytestmark = [pytest.mark.pipeline, pytest.mark.xdist_group("build")]
RANGES = yaml.safe_load((Path(__file__).parent / "metric_ranges.yaml").read_text())


@pytest.mark.parametrize("model", sorted(RANGES["candidates"]))
def test_candidate_metrics_in_range(ci_build, model):
    got = storage.read_json(ci_build.reports / "metrics.json")["candidates"][model]
    for metric, (low, high) in RANGES["candidates"][model].items():
        assert low <= got[metric] <= high, (
            f"{model} {metric} = {got[metric]:.4f} not in [{low}, {high}]"
        )


def test_monitored_batches_in_range(ci_build):
    low, high = RANGES["monitoring"]["roc_auc"]
    tests = storage.read_json(ci_build.reports / "monitoring" / "tests.json")
    for batch in tests["batches"]:
        assert low <= batch["roc_auc"] <= high, (batch["batch"], batch["roc_auc"])
