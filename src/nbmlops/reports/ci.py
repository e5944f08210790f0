"""`nbmlops-report`: what CI says about a build — the pull-request comment and the gate checks.

`comment` writes the pull-request comment as Markdown. It leads with one verdict line (build,
gates, tests, monitoring), then every candidate's held-out figures against the champion's on
the same rows, the gate table, the monitoring summary, the CI steps with the last lines of
each that failed, and what changed since the base branch. Every figure names the build it
came from; a record an earlier build left is refused, never shown as this build's.

`gates` exits non-zero when this build's challenger fails a promotion gate (or the build left
no gate result); `monitoring` exits non-zero when the newest batch (or any, with --all) fails
its monitoring gate.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import session
from ..errors import PipelineError
from ..layout import Layout, stopped_record
from ..monitoring.verdict import finding, real_batches, status_counts, summary, wrong_controls
from ..spec import HIGHER_IS_BETTER
from ..storage import read_json, write_text
from . import changes

MARKER = "<!-- nbmlops-report -->"
#: Where the workflow puts the link to the run's uploaded reports.
REPORTS_LINK = "<!-- reports-url -->"
#: Lines of a failed step's output the comment shows.
TAIL = 15
PASS, WARN, FAIL, NONE = "✅", "⚠️", "❌", "➖"
_PYTEST = re.compile(r"^=*\s*(\d+ (?:passed|failed|errors?|skipped)\b.*?) in [\d.]+s\b")


def _fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _delta(value) -> str:
    return "–" if value is None or value != value else f"{value:+.4f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows),
    ]


# --- what this build left, refused when an earlier build left it ---------------------------


@dataclass
class Found:
    """A record of the build, or None and why it is not shown."""

    data: dict | None
    note: str  # which build it came from, or why it is refused


def _stopped_how(build: dict) -> str:
    if build["status"] == "running":
        return "did not finish"
    if build["status"] == "passed":
        return "only built part of the pipeline" if build.get("partial") else "passed"
    where = f" in task {build['task']}" if build.get("task") else ""
    return f"failed{where}" + (f" ({build['kind']})" if build.get("kind") else "")


def current(path: Path, build: dict | None) -> Found:
    """The record at `path` when this build wrote it, or when the build passed in full and
    found it up to date; otherwise nothing, and why."""
    if build is None:
        return Found(None, "no build record: run `make build`")
    data = read_json(path) if path.is_file() else {}
    made = data.get("build_id")
    if made is not None and made == build["build_id"]:
        return Found(data, f"build {made}")
    if made is not None and build["status"] == "passed" and not build.get("partial"):
        return Found(data, f"build {made}, up to date in build {build['build_id']}")
    left = f"{path.name} is from build {made}" if made else f"no {path.name} of this build"
    return Found(None, f"{left}; build {build['build_id']} {_stopped_how(build)}")


@dataclass
class Evidence:
    """Everything the comment says, read from one build's reports and one CI run's steps."""

    model: str
    build: dict | None
    decided: Found  # evaluation's record: metrics.json, or the comparison the gates stopped
    monitored: Found  # the monitor's tests.json
    steps: list[Step]
    changed: list[str] | None  # None: no base branch to compare with

    @classmethod
    def read(cls, layout: Layout, steps: str | Path | None, base: str | None) -> Evidence:
        build = session.read_build(layout.reports)
        metrics_file = layout.product("evaluate", "metrics")
        decided = current(metrics_file, build)
        stopped = stopped_record(metrics_file)
        if decided.data is None and build and stopped.is_file():
            kept = read_json(stopped)
            if kept.get("build_id") == build["build_id"]:  # this build's, never an earlier one's
                decided = Found(kept, f"build {build['build_id']}, stopped by the gates")
        return cls(
            model=str(layout.env["mlflow"]["model_name"]),
            build=build,
            decided=decided,
            monitored=current(layout.product("monitor", "tests"), build),
            steps=read_steps(steps) if steps else [],
            changed=changes.since(base, layout.env_file) if base else None,
        )


# --- the CI run's steps ---------------------------------------------------------------------


@dataclass
class Step:
    """One CI step as `.ci/step` recorded it: its exit code (None: skipped) and its output."""

    name: str
    code: int | None
    seconds: int
    output: list[str]

    @property
    def failed(self) -> bool:
        return self.code not in (0, None)

    @property
    def tests(self) -> str:
        """pytest's summary of the step ("2 failed, 301 passed"), if it ran tests."""
        found = [m[1] for line in self.output if (m := _PYTEST.match(line.strip()))]
        return found[-1] if found else ""


def read_steps(folder: str | Path) -> list[Step]:
    """The steps `.ci/step` recorded in `folder` (steps.tsv: name, exit code, seconds)."""
    folder = Path(folder)
    index = folder / "steps.tsv"
    if not index.is_file():
        return []
    steps = []
    for line in index.read_text(encoding="utf-8").splitlines():
        name, code, seconds = (line.split("\t") + ["", ""])[:3]
        log = folder / f"{name}.log"
        output = (
            log.read_text(encoding="utf-8", errors="replace").splitlines() if log.is_file() else []
        )
        steps.append(Step(name, int(code) if code.lstrip("-").isdigit() else None,
                          int(seconds or 0), output))  # fmt: skip
    return steps


# --- the verdict ----------------------------------------------------------------------------


def gate_verdict(evidence: Evidence) -> tuple[str, str]:
    decided = evidence.decided.data
    if decided is None:
        return NONE, f"not checked ({evidence.decided.note})"
    rows = decided["gate"]
    passed = sum(row["status"] == "pass" for row in rows)
    mark = PASS if passed == len(rows) else FAIL
    return mark, f"{passed} of {len(rows)} pass"


def test_verdict(evidence: Evidence) -> tuple[str, str]:
    steps = [s for s in evidence.steps if s.name != "build"]
    if not steps:
        return NONE, "no CI steps recorded (`make ci` records them)"
    failed = [s for s in steps if s.failed]
    ran = [s for s in steps if s.code is not None]
    summaries = "; ".join(f"{s.name}: {s.tests}" for s in failed if s.tests)
    if failed:
        names = ", ".join(s.name for s in failed)
        return FAIL, f"{len(failed)} of {len(ran)} steps fail ({summaries or names})"
    counted = [s.tests for s in ran if s.tests]
    return PASS, f"{len(ran)} of {len(ran)} steps pass" + (
        f" ({'; '.join(counted)})" if counted else ""
    )


def monitoring_verdict(evidence: Evidence) -> tuple[str, str]:
    tests = evidence.monitored.data
    if tests is None:
        return NONE, f"not checked ({evidence.monitored.note})"
    found = summary(tests["batches"])
    return {"pass": PASS, "warn": WARN, "": NONE}.get(found.status, FAIL), found.text


def build_verdict(evidence: Evidence) -> tuple[str, str]:
    build = evidence.build
    if build is None:
        return NONE, "not run"
    if build["status"] == "passed":
        return PASS, f"build {build['build_id']}"
    return FAIL, f"build {build['build_id']} {_stopped_how(build)}"


def verdict_line(evidence: Evidence) -> str:
    parts = {
        "build": build_verdict(evidence),
        "gates": gate_verdict(evidence),
        "tests": test_verdict(evidence),
        "monitoring": monitoring_verdict(evidence),
    }
    failed = any(mark == FAIL for name, (mark, _) in parts.items() if name != "monitoring")
    failed |= any(s.failed for s in evidence.steps)
    overall = f"{FAIL} **fail**" if failed else f"{PASS} **pass**"
    return f"{overall} · " + " · ".join(
        f"{name} {mark} {text}" for name, (mark, text) in parts.items()
    )


# --- the sections ---------------------------------------------------------------------------


def _metric_order(decided: dict) -> list[str]:
    chosen = [decided["selection_metric"]] + [row["metric"] for row in decided["gate"]]
    return list(dict.fromkeys(chosen + ["f1"]))


def candidates_section(decided: dict, note: str) -> list[str]:
    """Every candidate against the champion on the same held-out rows, with deltas."""
    baseline = decided.get("baseline") or {}
    base = baseline.get("metrics") or {}
    order = _metric_order(decided)
    lines = ["", f"#### Candidates on the held-out window ({note})", "",
             f"Picked by `{decided['selection_metric']}`: **{decided['best']}**. Compared with "
             f"{baseline.get('compared_with', 'no committed champion')}.", ""]  # fmt: skip
    rows = []
    if base:
        label = f"champion v{baseline['version']}" + (
            f" ({baseline['candidate']})" if baseline.get("candidate") else ""
        )
        rows.append([label] + [_fmt(base.get(m)) for m in order])
    for name, figures in decided["candidates"].items():
        cells = []
        for m in order:
            value, ref = figures.get(m), base.get(m)
            both = value is not None and ref is not None
            cells.append(_fmt(value) + (f" ({_delta(value - ref)})" if both else ""))
        mark = " ★" if name == decided["best"] else ""
        rows.append([f"{name}{mark}"] + cells)
    worse = [m for m in order if m not in HIGHER_IS_BETTER]
    lines += _table(["model", *order], rows)
    if worse:
        lines += ["", f"Lower is better for {', '.join(worse)}; deltas are against the champion."]
    return lines


def gate_section(decided: dict) -> list[str]:
    lines = ["", "#### Promotion gates", "",
             f"The challenger is {'promotable' if decided['promotable'] else 'not promotable'}"
             + ("" if decided.get("gate_passed", True) else ": the gates stopped the build "
                "before it registered anything") + ".", ""]  # fmt: skip
    return lines + _table(
        ["metric", "champion", "challenger", "delta", "allowed", "status"],
        [[r["metric"], _fmt(r["baseline"]), _fmt(r["challenger"]), _delta(r["delta"]),
          r["allowed"], PASS if r["status"] == "pass" else f"{FAIL} fail"]
         for r in decided["gate"]],
    )  # fmt: skip


def monitoring_section(tests: dict, note: str) -> list[str]:
    real = real_batches(tests["batches"])
    kinds: dict[str, dict[str, list[str]]] = {}
    for batch in real:
        for level, reasons in (("fail", batch["reasons"]), ("warn", batch["warnings"])):
            for reason in reasons:
                kinds.setdefault(finding(reason), {"fail": [], "warn": []})[level].append(
                    batch["batch"]
                )
    lines = ["", f"#### Monitoring ({note})", ""]
    if not real:
        return lines + ["No batches to monitor."]
    counts = ", ".join(f"{n} {s}" for s, n in status_counts(real).items())
    lines += [f"{len(real)} batches: {counts}.", ""]
    ranked = sorted(kinds.items(), key=lambda kv: (-len(kv[1]["fail"]), -len(kv[1]["warn"])))
    if ranked:
        rows = [[kind, _batches(found["fail"]), _batches(found["warn"])] for kind, found in ranked]
        lines += _table(["finding", "fails in", "warns in"], rows)
    controls = [b for b in tests["batches"] if b["control"]]
    if controls:
        said = "Control batches as expected: " if not wrong_controls(tests["batches"]) else (
            f"{FAIL} control batches not as expected: ")  # fmt: skip
        lines += ["", said + ", ".join(f"{b['batch']} {b['status']}" for b in controls) + "."]
    lines += ["", "<details><summary>Every batch</summary>", ""]
    lines += _table(
        ["batch", "rows", "drift share", "ROC AUC", "shadow disagreement", "status", "why"],
        [[b["batch"], str(b["rows"]), _fmt(b["drift_share"], 2), _fmt(b.get("roc_auc")),
          _disagreement(b),
          b["status"], "; ".join(b["reasons"] + b["warnings"]) or "–"]
         for b in tests["batches"]],
    )  # fmt: skip
    return lines + ["", "</details>"]


def _disagreement(batch: dict) -> str:
    """The shadow's disagreement, unless the challenger answered itself (no champion yet)."""
    if str(batch.get("role", "")).startswith("acting"):
        return "no shadow"
    return _fmt(batch.get("disagreement"), 3)


def _batches(names: list[str]) -> str:
    if not names:
        return "–"
    return (
        ", ".join(names) if len(names) <= 3 else f"{len(names)} batches ({names[0]} … {names[-1]})"
    )


def _result(step: Step) -> str:
    if step.code is None:
        return "skipped"
    return f"{FAIL} exit {step.code}" if step.failed else PASS


def steps_section(steps: list[Step]) -> list[str]:
    if not steps:
        return []
    lines = ["", "#### CI steps", ""]
    rows = [[s.name, _result(s), str(s.seconds), s.tests or "–"] for s in steps]
    lines += _table(["step", "result", "seconds", "tests"], rows)
    for step in (s for s in steps if s.failed):
        tail = [line.rstrip() for line in step.output if line.strip()][-TAIL:]
        lines += ["", f"<details open><summary>{step.name}: the last lines</summary>", "",
                  "```text", *tail, "```", "", "</details>"]  # fmt: skip
    return lines


def comment_markdown(evidence: Evidence) -> str:
    """The pull-request comment: one Markdown document, marked so CI can update it in place."""
    lines = [MARKER, f"### Model check: {evidence.model}", "", verdict_line(evidence), ""]
    build, decided = evidence.build, evidence.decided
    if build and build["status"] != "passed":
        stopped = f"The build {_stopped_how(build)}"
        message = (build.get("message") or "").strip()
        if build.get("kind") == "GateError" and decided.data is not None:
            message = ""  # the gate table below says it
        lines += [stopped + (":" if message else ".")]
        lines += ["", "```text", message, "```"] if message else []
    if decided.data is not None:
        lines += candidates_section(decided.data, decided.note) + gate_section(decided.data)
    else:
        lines += ["", f"No candidates or gates to show: {decided.note}."]
    monitored = evidence.monitored
    if monitored.data is not None:
        lines += monitoring_section(monitored.data, monitored.note)
    else:
        lines += ["", f"No monitoring to show: {monitored.note}."]
    lines += steps_section(evidence.steps)
    if evidence.changed is not None:
        lines += ["", "#### Changes since the base branch", ""]
        lines += [f"- {line}" for line in evidence.changed] or ["No change to the model's inputs."]
    lines += ["", f"Reports: the `reports` artifact of this run{REPORTS_LINK}."]
    return "\n".join(lines) + "\n"


def failing_batches(tests: dict, newest_only: bool) -> list[dict]:
    real = real_batches(tests["batches"])
    chosen = real[-1:] if newest_only else real
    return [b for b in chosen if b["status"] == "fail"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nbmlops-report", description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="env.ci.yaml")
    sub = parser.add_subparsers(dest="command", required=True)
    comment = sub.add_parser("comment", help="the pull-request comment, as Markdown")
    comment.add_argument("--output", help="write here instead of standard output")
    comment.add_argument("--steps", help="the folder where .ci/step recorded the CI steps")
    comment.add_argument("--base", help="the base branch to list changes against (a git ref)")
    sub.add_parser("gates", help="fail when the challenger fails a promotion gate")
    monitoring = sub.add_parser("monitoring", help="fail when the newest batch fails its gate")
    monitoring.add_argument("--all", action="store_true", help="check every batch")
    args = parser.parse_args(argv)
    try:
        layout = Layout.from_env(args.env)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    evidence = Evidence.read(layout, getattr(args, "steps", None), getattr(args, "base", None))
    if args.command == "comment":
        text = comment_markdown(evidence)
        if args.output:
            write_text(args.output, text)
        else:
            print(text, end="")
        return 0
    if args.command == "gates":
        if evidence.decided.data is None:
            print(f"error: no gate result: {evidence.decided.note}", file=sys.stderr)
            return 1
        failed = [r for r in evidence.decided.data["gate"] if r["status"] != "pass"]
        for row in failed:
            print(f"gate failed: {row['metric']} = {row['challenger']} outside {row['allowed']}")
        print(f"promotion gates ({evidence.decided.note}):", "FAIL" if failed else "pass")
        return 1 if failed else 0
    if evidence.monitored.data is None:
        print(f"error: no monitoring result: {evidence.monitored.note}", file=sys.stderr)
        return 1
    failing = failing_batches(evidence.monitored.data, newest_only=not args.all)
    for batch in failing:
        print(f"monitoring gate failed on batch {batch['batch']}: {'; '.join(batch['reasons'])}")
    print("monitoring:", "FAIL" if failing else "pass")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
