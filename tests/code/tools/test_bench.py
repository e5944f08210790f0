"""The benchmark's report: ratios against their targets, as Markdown and escaped HTML."""

from nbmlops import html
from nbmlops.tools import bench


def _result(cold, papermill, script, noop, speedup, seconds_1m, kernels=70):
    build = {
        "env": "env.ci.yaml", "repeats": 3,
        "seconds": {"cold": cold, "cold_kernels": kernels, "papermill": papermill,
                    "script": script, "noop": noop, "noop_kernels": noop, "edit": cold / 2},
        "cold_vs_papermill": round(cold / papermill, 3),
        "kernels_vs_papermill": round(kernels / papermill, 3),
        "overhead_per_task_vs_script": round((cold - script) / 10, 2),
        "noop_vs_cold": round(noop / cold, 3), "edit_vs_cold": 0.5,
        "noop_vs_cold_kernels": round(noop / kernels, 3),
    }  # fmt: skip
    monitoring = [
        {"rows": 100_000, "seconds": 5.0, "scoring_seconds": 2.0, "seconds_vs_100k": 1.0,
         "peak_mb": 600, "scoring_peak_mb": 550, "peak_vs_100k": 1.0, "report_kb": 4800,
         "report_vs_100k": 1.0},
        {"rows": 1_000_000, "seconds": seconds_1m + 9.0, "scoring_seconds": 9.0,
         "seconds_vs_100k": (seconds_1m + 9) / 5, "peak_mb": 1500, "scoring_peak_mb": 800,
         "peak_vs_100k": 2.5, "report_kb": 4810, "report_vs_100k": 1.002},
    ]  # fmt: skip
    return {"machine": "2 cores", "max_rows": 100_000, "builds": [build],
            "grid": {"serial": 20.0, "parallel": 20.0 / speedup, "speedup": speedup},
            "monitoring": monitoring}  # fmt: skip


def _verdicts(text: str) -> list[str]:
    return [line.split("|")[-2].strip() for line in text.splitlines()
            if line.startswith("|") and line.rstrip().endswith(("yes |", "no |"))]  # fmt: skip


def test_targets_met_and_missed_are_marked():
    good = bench.markdown(_result(60, 58, 50, 4, 2.0, 12.0, kernels=62))
    assert _verdicts(good) == ["yes"] * 8
    bad = bench.markdown(_result(80, 58, 50, 9, 1.2, 31.0, kernels=66))
    assert _verdicts(bad) == ["no", "no", "no", "no", "no", "no", "yes", "no"]
    assert "| cold build / papermill loop | 1.379 | ≤ 1.1 | no |" in bad
    assert "| no-op rebuild / cold build, papermill executor | 0.136 | ≤ 0.1 | no |" in bad


def test_markdown_becomes_escaped_html_tables():
    page = html.markdown_tables("# T\n\n## A <b>\n\n| x | y |\n|---|---|\n| <i> | 2 |\ntext\n")
    assert "<h2>A &lt;b&gt;</h2>" in page and "<td>&lt;i&gt;</td>" in page
    assert page.count("<tr>") == 2 and "<p>text</p>" in page


def test_init_figures_against_their_target():
    def init(seconds, peak):
        return {"rows": 1_000_000, "columns": 12, "file_mb": 70, "init_vs_read": 4.0,
                "init": {"seconds": seconds, "peak_mb": peak},
                "read": {"seconds": 2.0, "peak_mb": 500}}  # fmt: skip

    result = _result(60, 58, 50, 4, 2.0, 12.0, kernels=62)
    assert _verdicts(bench.markdown(result | {"init": init(12.0, 1500)}))[6] == "yes"
    assert _verdicts(bench.markdown(result | {"init": init(31.0, 1500)}))[6] == "no"
    assert _verdicts(bench.markdown(result | {"init": init(12.0, 2100)}))[6] == "no"


def test_backtest_figures_against_their_budget():
    def backtest(env, seconds, budget):
        return {"env": env, "seconds": seconds, "policies": 5, "periods": 8, "fits": 45,
                "workers": 2, "vs_cold_build": 1.2, "workers_busy": 0.8, "budget": budget}  # fmt: skip

    result = _result(60, 58, 50, 4, 2.0, 12.0, kernels=62) | {"backtest": [
        backtest("env.ci.yaml", 46.0, 120.0), backtest("env.yaml", 640.0, 600.0),
        backtest("env.mine.yaml", 30.0, None)]}  # fmt: skip
    text = bench.markdown(result)
    assert "| env.ci.yaml | 5 | 8 | 45 | 46.0 | 1.2 | 0.8 | 120.0 | yes |" in text
    assert "| env.yaml | 5 | 8 | 45 | 640.0 | 1.2 | 0.8 | 600.0 | no |" in text
    assert "| env.mine.yaml | 5 | 8 | 45 | 30.0 | 1.2 | 0.8 |  |  |" in text
