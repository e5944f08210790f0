"""`make load`'s harness at a small size: every run happens, nothing fails, the report says so.

The figures themselves are benchmarks (reports/load); here only that the machinery measures.
"""

from __future__ import annotations

import pytest

from nbmlops.tools import loadtest

pytestmark = [pytest.mark.pipeline, pytest.mark.xdist_group("build")]


def test_load_harness_runs_every_scenario_on_a_registry_copy(ci_build, tmp_path):
    db = ci_build.project / "mlruns" / "mlflow.db"
    before = db.read_bytes()
    result = loadtest.run(ci_build.project / "env.ci.yaml", rate=20, seconds=4, users=4,
                          moves=4, drill_ms=300, scratch=tmp_path, rates=(10, 20),
                          curve_seconds=3)  # fmt: skip
    assert db.read_bytes() == before  # moves happened in the copy
    runs = result["runs"]
    assert list(runs) == ["shadow on", "shadow on, locust", "GET /health", "GET /health, locust",
                          "shadow off", "canary 10%", "mlflow models serve", "champion moves",
                          "champion slowed (fallback answers)"]  # fmt: skip
    for name, run in runs.items():
        assert run["requests"] >= 20 and run["failures"] == 0, (name, run["failure_kinds"])
        assert 0 < run["p50_ms"] <= run["p99_ms"], (name, run)
        if run["generator"] == "open loop":  # locust rounds its percentiles, not its maximum
            assert run["p99_ms"] <= run["max_ms"], (name, run)
    assert {r["generator"] for r in runs.values()} == {"open loop", "locust"}
    assert result["swaps"]["moves"] == 4 and result["swaps"]["all_under_load"]
    assert result["swaps"]["swaps_served"] >= 5 and "error" not in result["swaps"]
    archive = result["archive"]  # every record the service answered, archived
    assert archive["records"] == archive["records_answered"] >= runs["shadow on"]["requests"]
    canary = result["canary"]  # every record answered by one arm, the canary's near its share
    assert canary["records"] == runs["canary 10%"]["requests"]
    assert set(canary["arms"]) <= {"champion", "canary"} and canary["arms"].get("canary", 0) > 0
    assert 0 < canary["canary_share"] < 0.3
    text = loadtest.markdown(result)
    assert "| failed requests while champion moved 4 times | 0 | 0 | yes |" in text
    assert "| champion slowed by 300 ms: answers not from the fallback | 0 | 0 | yes |" in text
    # the champion is scored compiled, and the in-process times name every form it has
    calls = result["call_ms"]
    assert calls["served_form"].startswith("compiled (") and not calls["why_not_compiled"]
    assert set(calls["ms"]) == {"pipeline", "fused", calls["served_form"],
                                f"{calls['served_form']}, from records"}  # fmt: skip
    assert all(ms > 0 for ms in calls["ms"].values())
    assert f"| form the service answers with | {calls['served_form']} | compiled | yes |" in text
    curves = result["saturation"]["curves"]
    assert set(curves) == {"service", "mlflow models serve"}
    for curve in curves.values():  # each server climbs until its p99 passes 20 ms or rates end
        offered = [p["offered"] for p in curve["points"]]
        assert offered == [10, 20][: len(offered)] and offered
        assert all(p["throughput_rps"] > 0 for p in curve["points"])
    assert loadtest.curve_figure(result).startswith('<img alt="plot"')
