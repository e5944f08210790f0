"""`nbmlops-report`: what CI says about a build — the pull-request comment and the gate checks.

`comment` prints Markdown (metrics against the committed baseline with deltas, gate status,
drift per batch); `gates` exits non-zero when the challenger fails a promotion gate;
`monitoring` exits non-zero when the newest batch (or any, with --all) fails its monitoring gate.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..errors import PipelineError
from ..layout import Layout
from ..storage import read_json, write_text

MARKER = "<!-- nbmlops-report -->"


def _fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _delta(value) -> str:
    return "–" if value is None else f"{value:+.4f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def comment_markdown(metrics: dict, tests: dict, baseline: dict | None, model: str) -> str:
    """The pull-request comment: one Markdown document, marked so CI can update it in place."""
    gate_ok = all(row["status"] == "pass" for row in metrics["gate"])
    base = f"v{baseline['version']}" if baseline else "none yet"
    lines = [
        MARKER,
        f"### Model check: {model} — gates {'✅ pass' if gate_ok else '❌ FAIL'}",
        "",
        f"Challenger: v{metrics['version']} ({metrics['best']}), baseline (champion): {base}; "
        f"promotable: {'yes' if metrics['promotable'] else 'no'}.",
        "",
    ]
    lines += _table(
        ["metric", "baseline", "challenger", "delta", "allowed", "status"],
        [
            [r["metric"], _fmt(r["baseline"]), _fmt(r["challenger"]), _delta(r["delta"]),
             r["allowed"], "✅" if r["status"] == "pass" else "❌"]
            for r in metrics["gate"]
        ],
    )  # fmt: skip
    lines += ["", "#### Drift and performance by batch", ""]
    lines += _table(
        ["batch", "rows", "drift share", "prediction drift", "ROC AUC", "disagreement", "status"],
        [
            [b["batch"] + (f" (control: {b['control']})" if b["control"] else ""),
             str(b["rows"]), _fmt(b["drift_share"], 2), "yes" if b["prediction_drift"] else "no",
             _fmt(b.get("roc_auc")), _fmt(b.get("disagreement"), 3),
             _status(b)]
            for b in tests["batches"]
        ],
    )  # fmt: skip
    return "\n".join(lines) + "\n"


def _status(batch: dict) -> str:
    """A batch's status cell: its reasons when it fails, its warnings when it warns."""
    if batch["status"] == "fail":
        return "❌ " + "; ".join(batch["reasons"])
    if batch["status"] == "warn":
        return "⚠️ " + "; ".join(batch["warnings"])
    return "✅"


def failing_batches(tests: dict, newest_only: bool) -> list[dict]:
    real = [b for b in tests["batches"] if not b["control"]]
    chosen = real[-1:] if newest_only else real
    return [b for b in chosen if b["status"] == "fail"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nbmlops-report", description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="env.ci.yaml")
    sub = parser.add_subparsers(dest="command", required=True)
    comment = sub.add_parser("comment", help="the pull-request comment, as Markdown")
    comment.add_argument("--output", help="write here instead of standard output")
    sub.add_parser("gates", help="fail when the challenger fails a promotion gate")
    monitoring = sub.add_parser("monitoring", help="fail when the newest batch fails its gate")
    monitoring.add_argument("--all", action="store_true", help="check every batch")
    args = parser.parse_args(argv)
    try:
        layout = Layout.from_env(args.env)
        env = layout.env
        metrics = read_json(layout.product("evaluate", "metrics"))
        tests = read_json(layout.product("monitor", "tests"))
    except (PipelineError, FileNotFoundError) as exc:
        print(f"error: {exc} (run the build first)", file=sys.stderr)
        return 1
    if args.command == "comment":
        baseline_file = Path(env["baseline"])
        baseline = read_json(baseline_file) if baseline_file.is_file() else None
        text = comment_markdown(metrics, tests, baseline, env["mlflow"]["model_name"])
        if args.output:
            write_text(args.output, text)
        else:
            print(text, end="")
        return 0
    if args.command == "gates":
        failed = [r for r in metrics["gate"] if r["status"] != "pass"]
        for row in failed:
            print(f"gate failed: {row['metric']} = {row['challenger']} outside {row['allowed']}")
        print("promotion gates:", "FAIL" if failed else "pass")
        return 1 if failed else 0
    failing = failing_batches(tests, newest_only=not args.all)
    for batch in failing:
        print(f"monitoring gate failed on batch {batch['batch']}: {'; '.join(batch['reasons'])}")
    print("monitoring:", "FAIL" if failing else "pass")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
