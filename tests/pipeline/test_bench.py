"""`make bench`'s monitoring of scaled-up batches, at a small size on the CI build."""

from __future__ import annotations

import pytest

from nbmlops.tools import bench

pytestmark = [pytest.mark.pipeline, pytest.mark.xdist_group("build")]


def test_monitoring_bench_makes_each_batch_apart_and_monitors_it_whole(ci_build, tmp_path):
    env_file = ci_build.project / "env.ci.yaml"
    found = bench.bench_monitoring(env_file, tmp_path, max_rows=5_000, rows=(5_000, 50_000))
    assert [r["rows"] for r in found] == [5_000, 50_000]  # every row of each batch scored
    for r in found:
        assert 0.5 < r["roc_auc"] < 1 and 0 <= r["drift_share"] <= 1
        assert r["peak_mb"] > 0 and r["report_kb"] > 0 and r["seconds"] > 0
    assert found[0]["seconds_vs_100k"] == 1.0 and found[1]["report_vs_100k"] > 0
    assert not list(tmp_path.glob("batch-*.parquet"))  # each batch file is removed after use
