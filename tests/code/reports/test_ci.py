"""The pull-request comment and the CI checks: what a reviewer reads first, and nothing stale."""

import subprocess

from nbmlops import session, storage
from nbmlops.reports import changes
from nbmlops.reports import ci as report

GATE = [
    {"metric": "roc_auc", "baseline": 0.70, "challenger": 0.69, "delta": -0.01, "allowed": "[0.6800, inf]", "status": "pass"},
    {"metric": "brier", "baseline": 0.21, "challenger": 0.26, "delta": 0.05, "allowed": "[-inf, 0.2500]", "status": "FAIL"},
]  # fmt: skip
DECIDED = {
    "build_id": "B2", "best": "logreg", "selection_metric": "roc_auc", "promotable": False,
    "gate_passed": False, "gate": GATE,
    "candidates": {"logreg": {"roc_auc": 0.69, "brier": 0.26, "f1": 0.4},
                   "rf": {"roc_auc": 0.65, "brier": 0.20, "f1": 0.5}},
    "baseline": {"version": "4", "candidate": "logreg", "compared_with": "v4, the champion, scored on these held-out rows",
                 "metrics": {"roc_auc": 0.70, "brier": 0.21, "f1": 0.45}},
}  # fmt: skip


def batch(name, status, control="", reasons=(), warnings=(), role="champion"):
    return {"batch": name, "control": control, "rows": 10, "drift_share": 0.2, "roc_auc": 0.7,
            "disagreement": 0.01, "status": status, "reasons": list(reasons),
            "warnings": list(warnings), "role": role}  # fmt: skip


TESTS = {"build_id": "B2", "batches": [
    batch("2013-05", "pass"),
    batch("2013-06", "fail", reasons=["brier 0.255 [0.242, 0.269] > 0.241 (held-out 0.206 + 0.02)"],
          warnings=["prediction drift: the served model's scores moved (drift score 0.584)"]),
    batch("2013-07", "warn", warnings=["prediction drift: the served model's scores moved (drift score 0.2)",
                                       "calibration moved: observed rate 32.3% against 9.9% predicted"]),
    batch("control-same", "pass", control="same"),
    batch("control-shifted", "fail", control="shifted", reasons=["data drift in 78% of the model's features (14 of 18: a, b) > 50%"]),
]}  # fmt: skip
PASSED = {"build_id": "B2", "status": "passed", "partial": False}


def evidence(decided=DECIDED, tests=TESTS, build=PASSED, steps=(), changed=None):
    return report.Evidence(
        "flight-delay-ci", build, report.Found(decided, "build B2"), report.Found(tests, "build B2"),
        list(steps), changed,
    )  # fmt: skip


def verdict(text: str) -> str:
    return text.splitlines()[3]


def test_the_comment_leads_with_one_verdict_line_of_counts():
    text = report.comment_markdown(evidence())
    assert text.startswith(report.MARKER)
    assert verdict(text) == (
        "❌ **fail** · build ✅ build B2 · gates ❌ 1 of 2 pass · tests ➖ no CI steps recorded "
        "(`make ci` records them) · monitoring ⚠️ newest batch 2013-07 warns (prediction "
        "drift); 3 batches: 1 fail, 1 warn, 1 pass"
    )
    assert "| brier | 0.2100 | 0.2600 | +0.0500 | [-inf, 0.2500] | ❌ fail |" in text
    # every candidate against the champion on the same rows, the winner and why
    assert "| champion v4 (logreg) | 0.7000 | 0.2100 | 0.4500 |" in text
    assert "| logreg ★ | 0.6900 (-0.0100) | 0.2600 (+0.0500) | 0.4000 (-0.0500) |" in text
    assert "Picked by `roc_auc`: **logreg**" in text and "scored on these held-out rows" in text
    assert "the gates stopped the build before it registered anything" in text


def test_monitoring_is_a_summary_by_finding_not_a_wall_of_marks():
    text = report.comment_markdown(evidence())
    assert "| prediction drift | – | 2013-06, 2013-07 |" in text
    assert "| brier | 2013-06 | – |" in text and "| calibration moved | – | 2013-07 |" in text
    assert "Control batches as expected: control-same pass, control-shifted fail." in text
    assert text.count("❌") == 3  # the verdict, the failing gate row and its verdict part
    wrong = {
        "batches": TESTS["batches"][:4] + [batch("control-shifted", "pass", control="shifted")]
    }
    mark, said = report.monitoring_verdict(evidence(tests=wrong))
    assert mark == report.FAIL and said.endswith("control control-shifted passes")


def test_an_acting_champion_has_no_shadow_figures():
    tests = {"batches": [batch("2013-05", "pass", role="acting champion (no champion yet)")]}
    text = report.comment_markdown(evidence(tests=tests))
    assert "| 2013-05 | 10 | 0.20 | 0.7000 | no shadow | pass | – |" in text


def test_a_failed_step_is_named_with_its_last_lines_and_pytest_counts(tmp_path):
    lines = [f"line {i}" for i in range(30)] + [
        "FAILED tests/code/base/test_x.py::test_y - assert 1 == 2",
        "========== 1 failed, 12 passed in 3.21s ==========",
    ]  # fmt: skip
    (tmp_path / "lint.log").write_text("All checks passed!\n")
    (tmp_path / "test-fast.log").write_text("\n".join(lines) + "\n")
    (tmp_path / "steps.tsv").write_text("lint\t0\t4\ntest-fast\t1\t95\nnbval\tskipped\t0\n")
    steps = report.read_steps(tmp_path)
    assert [(s.name, s.code, s.failed) for s in steps] == [
        ("lint", 0, False), ("test-fast", 1, True), ("nbval", None, False)
    ]  # fmt: skip
    text = report.comment_markdown(evidence(decided={**DECIDED, "gate": GATE[:1]}, steps=steps))
    assert verdict(text).startswith("❌ **fail** · build ✅ build B2 · gates ✅ 1 of 1 pass · "
                                    "tests ❌ 1 of 2 steps fail (test-fast: 1 failed, 12 passed)")  # fmt: skip
    block = text.split("<summary>test-fast: the last lines</summary>")[1].split("</details>")[0]
    assert "FAILED tests/code/base/test_x.py::test_y" in block and "line 16" not in block
    assert "| nbval | skipped | 0 | – |" in text


def test_a_record_of_an_earlier_build_is_refused(tmp_path):
    metrics = tmp_path / "metrics.json"
    storage.write_json(metrics, {"build_id": "B1", "gate": []})
    failed = {"build_id": "B2", "status": "failed", "task": "evaluate", "kind": "GateError"}
    found = report.current(metrics, failed)
    assert found.data is None
    assert (
        found.note == "metrics.json is from build B1; build B2 failed in task evaluate (GateError)"
    )
    # a build that passed in full found it up to date: shown, with the build it came from
    kept = report.current(metrics, {"build_id": "B2", "status": "passed", "partial": False})
    assert kept.data is not None and kept.note == "build B1, up to date in build B2"
    partial = report.current(metrics, {"build_id": "B2", "status": "passed", "partial": True})
    assert partial.data is None and "only built part of the pipeline" in partial.note
    storage.write_json(metrics, {"build_id": "B2", "gate": []})
    assert report.current(metrics, failed).note == "build B2"
    assert report.current(metrics, None).note == "no build record: run `make build`"


def test_a_failed_build_shows_its_message_and_nothing_it_did_not_check():
    build = {"build_id": "B3", "status": "failed", "task": "ingest", "kind": "DataError",
             "message": "data/flights.csv: column 'dep_time': 12 values are not numbers"}  # fmt: skip
    stale = report.Found(None, "metrics.json is from build B2; build B3 failed in task ingest")
    text = report.comment_markdown(report.Evidence("m", build, stale, stale, [], None))
    assert verdict(text).startswith("❌ **fail** · build ❌ build B3 failed in task ingest "
                                    "(DataError) · gates ➖ not checked (metrics.json is from")  # fmt: skip
    assert "column 'dep_time': 12 values are not numbers" in text
    assert "0.7000" not in text  # no figure of build B2


def test_the_build_record_and_id(tmp_path, monkeypatch):
    monkeypatch.setenv(session.BUILD_ID, "")  # restored afterwards, whatever mark_build sets
    monkeypatch.setenv(session.BUILD, "")
    session.mark_build()
    made = session.build_id()
    assert made == session.build_id()  # one id for the whole build, inherited by its tasks
    session.record_build(tmp_path, {"build_id": made, "status": "running"})
    assert session.read_build(tmp_path) == {"build_id": made, "status": "running"}
    assert session.read_build(tmp_path / "none") is None


def test_findings_are_named_by_their_first_words():
    assert (
        report.finding("prediction drift: the served model's scores moved (0.5)")
        == "prediction drift"
    )
    assert report.finding("brier 0.255 [0.242, 0.269] > 0.241") == "brier"
    assert report.finding("data drift in 78% of the model's features") == "data drift"
    assert report.finding("dest: 1.1% of rows hold values unseen") == "dest"


def test_settings_differences_key_by_key():
    old = {"candidates": {"rf": {"params": {"n_estimators": 60}}}, "selection_metric": "roc_auc"}
    new = {"candidates": {"rf": {"params": {"n_estimators": 100}}, "et": {"estimator": "x.Y"}},
           "selection_metric": "pr_auc"}  # fmt: skip
    assert changes.diff(old, new) == [
        "`candidates.rf.params.n_estimators`: 60 → 100",
        '`candidates.et` added: {"estimator": "x.Y"}',
        '`selection_metric`: "roc_auc" → "pr_auc"',
    ]
    assert changes.diff(new, old)[1] == '`candidates.et` removed (was {"estimator": "x.Y"})'


def test_changes_since_the_base_branch(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("config", "user.email", "ci@example.org")
    git("config", "user.name", "ci")
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "f.py").write_text("def derive(rows):\n    return rows\n")
    (tmp_path / "env.yaml").write_text(
        'features: {file: "{{here}}/features/f.py", function: derive}\nseed: 1\n'
    )
    (tmp_path / "README.md").write_text("hi\n")
    git("add", "-A")
    git("commit", "-qm", "base")
    git("checkout", "-qb", "change")
    (tmp_path / "env.yaml").write_text(
        'features: {file: "{{here}}/features/f.py", function: derive}\nseed: 2\n'
    )
    (tmp_path / "features" / "f.py").write_text("def derive(rows):\n    return rows.copy()\n")
    (tmp_path / "README.md").write_text("hello\n")
    git("commit", "-qam", "change")
    assert changes.since("main", tmp_path / "env.yaml") == [
        "`env.yaml`: `seed`: 1 → 2",
        "derived features: `features/f.py` +1 −1",
        "other files (tests, docs, workflows…): 1 file +1 −1 (`README.md`)",
    ]
    assert changes.since("no-such-branch", tmp_path / "env.yaml")[0].startswith(
        "the base no-such-branch is not in this clone"
    )


def test_monitoring_checks_newest_real_batch_or_all():
    assert [b["batch"] for b in report.failing_batches(TESTS, newest_only=False)] == ["2013-06"]
    assert report.failing_batches(TESTS, newest_only=True) == []
