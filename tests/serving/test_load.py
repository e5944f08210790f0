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
                          moves=4, drill_ms=300, scratch=tmp_path)  # fmt: skip
    assert db.read_bytes() == before  # moves happened in the copy
    runs = result["runs"]
    assert list(runs) == ["shadow on", "shadow off", "mlflow models serve", "champion moves",
                          "champion slowed (fallback answers)"]  # fmt: skip
    for name, run in runs.items():
        assert run["requests"] >= 20 and run["failures"] == 0, (name, run["failure_kinds"])
    assert result["swaps"]["moves"] == 4 and result["swaps"]["all_under_load"]
    assert result["swaps"]["swaps_served"] >= 5 and "error" not in result["swaps"]
    archive = result["archive"]  # every record the service answered, archived
    assert archive["records"] == archive["records_answered"] >= runs["shadow on"]["requests"]
    text = loadtest.markdown(result)
    assert "| failed requests while champion moved 4 times | 0 | 0 | yes |" in text
    assert "| champion slowed by 300 ms: answers not from the fallback | 0 | 0 | yes |" in text
