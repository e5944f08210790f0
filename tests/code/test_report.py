from nbmlops.reports import ci as report

METRICS = {
    "best": "logreg", "version": "3", "promotable": False,
    "gate": [
        {"metric": "roc_auc", "baseline": 0.70, "challenger": 0.69, "delta": -0.01, "allowed": "[0.6800, inf]", "status": "pass"},
        {"metric": "brier", "baseline": None, "challenger": 0.2, "delta": None, "allowed": "[-inf, 0.2500]", "status": "FAIL"},
    ],
}  # fmt: skip
TESTS = {"batches": [
    {"batch": "2013-05", "control": "", "rows": 10, "drift_share": 0.2, "prediction_drift": False, "roc_auc": 0.7, "disagreement": 0.01, "status": "pass", "reasons": []},
    {"batch": "2013-06", "control": "", "rows": 12, "drift_share": 0.6, "prediction_drift": True, "roc_auc": 0.6, "disagreement": 0.2, "status": "fail", "reasons": ["data drift in 60% of features"]},
    {"batch": "control-same", "control": "same", "rows": 5, "drift_share": 0.0, "prediction_drift": False, "roc_auc": 0.7, "disagreement": 0.0, "status": "pass", "reasons": []},
]}  # fmt: skip


def test_comment_has_marker_deltas_gate_and_drift():
    text = report.comment_markdown(METRICS, TESTS, {"version": "2"}, "flight-delay-ci")
    assert text.startswith(report.MARKER)
    assert "gates ❌ FAIL" in text and "baseline (champion): v2" in text
    assert "| roc_auc | 0.7000 | 0.6900 | -0.0100 | [0.6800, inf] | ✅ |" in text
    assert "| brier | – | 0.2000 | – |" in text
    assert (
        "| 2013-06 | 12 | 0.60 | yes | 0.6000 | 0.200 | ❌ data drift in 60% of features |" in text
    )
    assert "control-same (control: same)" in text


def test_monitoring_checks_newest_real_batch_or_all():
    assert [b["batch"] for b in report.failing_batches(TESTS, newest_only=True)] == ["2013-06"]
    healthy = {"batches": TESTS["batches"][:1] + TESTS["batches"][2:]}
    assert report.failing_batches(healthy, newest_only=True) == []
    assert len(report.failing_batches(TESTS, newest_only=False)) == 1
