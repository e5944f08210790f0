"""`make soak`'s harness at a small size: every part runs and measures, and its checks can fail.

The figures themselves are a benchmark (reports/soak, half an hour); here only that the
machinery measures what it says.
"""

from __future__ import annotations

import copy

import pytest

from nbmlops.tools import soak


@pytest.mark.pipeline
@pytest.mark.xdist_group("build")
def test_the_soak_harness_measures_memory_latency_records_and_labels(ci_build, tmp_path):
    db = ci_build.project / "mlruns" / "mlflow.db"
    before = db.read_bytes()
    result = soak.run(ci_build.project / "env.ci.yaml", minutes=0.5, rate=40, canary=0.3,
                      labelled=0.25, window=5, scratch=tmp_path)  # fmt: skip
    assert db.read_bytes() == before  # the canary's version was registered in the copy
    assert len(result["windows"]) == 6 and [w["window"] for w in result["windows"]] == list(
        range(6)
    )
    assert sum(w["requests"] for w in result["windows"]) == int(40 * 0.75 * 30)
    names = {n for s in result["samples"] for n in s["rss"]}
    assert {"service", "load client", "soak (labels sender)"} <= names
    assert "shadow and archive" in names
    r = result["records"]
    assert r["answered"] == r["rows"] == r["distinct"] == r["received"] > 1000
    labels = result["labels"]
    assert labels["posted"] == labels["accepted"] > 150
    assert result["experiment"]["share"] == 0.3 and not result["experiment"]["rolled_back"]
    assert result["experiment"]["test"]["labels_canary"] > 0
    checks = soak.verdicts(result)
    assert all(ok for *_, ok in checks[-5:]), checks  # records, failures, restarts, labels, canary
    text = soak.markdown(result)
    assert "| records answered / archived rows / distinct keys / answers received |" in text
    assert all(f.startswith('<img alt="plot"') for f in soak.figures(result))


def _result() -> dict:
    """A soak's figures where every check is met."""
    windows = [{"at": 10.0 * (i + 1), "p99_ms": 12.0, "p50_ms": 4.0, "requests": 100,
                "failures": 0, "throughput_rps": 10.0, "failure_kinds": []}
               for i in range(30)]  # fmt: skip
    samples = [{"t": 5.0 * i, "rss": {"service": 500.0}, "labels_canary": i, "labels_champion": i}
               for i in range(61)]  # fmt: skip
    result = {"warmup_s": 30.0, "window_s": 10.0, "budget_ms": 50.0, "windows": windows,
              "samples": samples, "failures": 0,
              "records": {"answered": 3000, "rows": 3000, "distinct": 3000, "received": 3000,
                          "dropped": 0, "shadow_restarts": 0},
              "labels": {"posted": 150, "accepted": 150}, "canary_share": 0.1,
              "experiment": {"share": 0.1, "error": None, "rolled_back": None,
                             "test": {"labels_canary": 20}}}  # fmt: skip
    result["rss"] = soak._memory(samples, result["warmup_s"], samples[-1]["t"])
    result["p99"] = soak._p99(windows, result["warmup_s"])
    return result


def _failed(result: dict) -> list[str]:
    return [label for label, _, _, ok in soak.verdicts(result) if not ok]


def test_each_check_of_the_soak_fails_when_its_figure_is_off():
    assert _failed(_result()) == []
    growing = _result()  # memory that grows by a fifth after the warm-up
    for s in growing["samples"]:
        s["rss"]["service"] = 500.0 + max(0.0, s["t"] - 30) / 270 * 100
    growing["rss"] = soak._memory(growing["samples"], 30.0, 300.0)
    assert growing["rss"]["service"]["growth"] > 0.15
    assert growing["rss"]["service"]["slope_mb_per_hour"] == pytest.approx(1333.3, rel=0.01)
    assert _failed(growing) == ["RSS of service: last tenth / after warm-up"]
    slower = _result()  # p99 that doubles in the last third, still within the budget
    for w in slower["windows"][20:]:
        w["p99_ms"] = 30.0
    slower["p99"] = soak._p99(slower["windows"], 30.0)
    assert _failed(slower) == ["p99, last third / first third (medians of windows)"]
    lost = copy.deepcopy(_result())  # a record answered but not on disk
    lost["records"]["rows"] = lost["records"]["distinct"] = 2999
    assert _failed(lost) == ["records answered / archived rows / distinct keys / answers received"]
    twice = _result()  # a record kept twice: the raw rows outnumber the keys
    twice["records"]["rows"] = 3001
    assert len(_failed(twice)) == 1
    refused = _result()
    refused["labels"]["accepted"] = 149
    assert _failed(refused) == ["labels posted / accepted"]
    restarted = _result()
    restarted["records"]["shadow_restarts"] = 1
    assert _failed(restarted) == ["shadow and archive process restarts"]
    gone = _result()  # a process that stopped after the warm-up
    gone["samples"] = [s | {"rss": s["rss"] | ({"shadow and archive": 300.0} if s["t"] < 200
                                                else {})} for s in gone["samples"]]  # fmt: skip
    gone["rss"] = soak._memory(gone["samples"], 30.0, 300.0)
    assert _failed(gone) == ["RSS of shadow and archive: last tenth / after warm-up"]
    rolled = _result()
    rolled["experiment"]["rolled_back"] = "its p99 latency ..."
    assert _failed(rolled) == ["the canary at the end: share, labels in its test, errors"]
