"""`make soak`: the scoring service at a steady rate for a long time, with everything on.

One server answers `--rate` requests a second for `--minutes` (30 and 300 by default) with a
shadow, a canary (`--canary`, 10 % of the records, to a second version of the champion's own
candidate, so the experiment runs and is not rolled back) and labels posted to `/feedback`
for a share of the answers (`--labelled`). The open-loop client (`nbmlops.tools.openloop`)
reports every `--window` seconds; every `SAMPLE_SECONDS` the resident memory (RSS) of every
process of the service and of the client is read from `/proc`, with the service's counters.

What it checks, after a warm-up (the first tenth, at least two minutes, when memory is still
filling caches):

- memory: the median RSS of each process over the last tenth of the run is within 10 % of its
  median over the tenth after the warm-up (its slope in MB per hour is reported too);
- latency: no window's p99 over the latency budget, and the p99 of the last third at most 1.5×
  that of the first third;
- records: every answered record is on disk exactly once (the archive's raw rows, its distinct
  keys and the service's count of records answered agree, and agree with the answers the
  clients received), and none was dropped;
- labels: every label posted was accepted.

Writes `soak.json`, `soak.md` and `index.html` with the curves into the output folder (the
reports folder's soak/). The registry moves in a copy (`nbmlops.tools.loadtest.Drill`).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd

from ..errors import ConfigError
from ..layout import SOAK_PAGES, Layout
from ..records import FILE_PREFIX, KEY, SEGMENT_PREFIX, SEGMENT_SUFFIX, SEGMENTS, json_lines
from ..registry.runs import register_candidate
from .bench import publish
from .loadtest import Drill, Process, _build_of, _get, answered_records, machine

#: Seconds between two readings of memory and counters.
SAMPLE_SECONDS = 5.0
#: The registry alias of the canary the soak declares.
CANARY_ALIAS = "canary"
#: Limits of the verdicts: memory growth, and the p99 of the last third against the first.
RSS_GROWTH, P99_DRIFT = 0.10, 1.5
#: Labels are posted this many seconds after their answer, in one body.
LABEL_DELAY = 5.0


def rss_mb(pid: int) -> float | None:
    """A process's resident memory in MB, or None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def family(pid: int) -> list[int]:
    """A process and every process below it."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def metric(text: str, name: str) -> float:
    """The samples of one metric of a Prometheus text exposition, summed over its labels
    (0 when absent)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith((name + " ", name + "{")))  # fmt: skip


def role(pid: int) -> str:
    """What a child process of the service is, by its command line."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return f"pid {pid}"
    return "resource tracker" if "resource_tracker" in cmdline else "shadow and archive"


class Labeller(threading.Thread):
    """Asks for `rate` answers a second on its own connection and posts their true outcomes
    to /feedback `LABEL_DELAY` seconds later, as a label sender would."""

    def __init__(self, url: str, records: list[dict], outcomes: list[int], rate: float):
        super().__init__(name="labeller", daemon=True)
        self.host, self.port = url.split("//", 1)[1].rsplit(":", 1)
        self.records, self.outcomes, self.rate = records, outcomes, rate
        self.stop = threading.Event()
        self.answered = 0  # predictions answered 200
        self.failed: Counter = Counter()
        self.statuses: Counter = Counter()  # what /feedback said of each label

    def _post(self, conn, path: str, body) -> tuple[int, dict]:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read() or b"{}")

    def run(self) -> None:
        conn = http.client.HTTPConnection(self.host, int(self.port), timeout=10)
        waiting: list[tuple[float, str, int]] = []
        i, start = 0, time.monotonic()
        while not self.stop.is_set() or waiting:
            if not self.stop.is_set():
                due = start + i / self.rate
                self.stop.wait(max(0.0, due - time.monotonic()))
            now = time.monotonic()
            try:
                if not self.stop.is_set():
                    n = i % len(self.records)
                    status, body = self._post(conn, "/predict", self.records[n])
                    i += 1
                    if status == 200:
                        self.answered += 1
                        waiting.append((now, body["request_id"], self.outcomes[n]))
                    else:
                        self.failed[f"predict HTTP {status}"] += 1
                ripe = [w for w in waiting if now - w[0] >= LABEL_DELAY or self.stop.is_set()]
                if ripe and (len(ripe) >= self.rate * LABEL_DELAY or self.stop.is_set()):
                    items = [{"request_id": r, "outcome": o} for _, r, o in ripe]
                    status, body = self._post(conn, "/feedback", {"labels": items})
                    waiting = waiting[len(ripe) :]
                    if status != 200:
                        self.failed[f"feedback HTTP {status}"] += len(items)
                    else:
                        self.statuses.update(r["status"] for r in body["results"])
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self.failed[type(exc).__name__] += 1
                conn.close()
                conn = http.client.HTTPConnection(self.host, int(self.port), timeout=10)
                if self.stop.is_set():
                    break


def archive_rows(folder: Path) -> tuple[int, int]:
    """(rows, distinct keys) of every archive file and segment, read raw: a record kept twice
    counts twice here."""
    files = sorted(folder.glob(f"{FILE_PREFIX}*.parquet"))
    frames = [pd.read_parquet(p, columns=KEY) for p in files]
    rows = [r for p in sorted((folder / SEGMENTS).glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}"))
            for r in json_lines(p)]  # fmt: skip
    if rows:
        frames.append(pd.DataFrame(rows)[KEY])
    if not frames:
        return 0, 0
    every = pd.concat(frames, ignore_index=True)
    return len(every), len(every.drop_duplicates(KEY))


def verdicts(result: dict) -> list[tuple[str, str, str, bool]]:
    """(check, value, target, met) of a soak's figures; see the module's docstring."""
    out = []
    warm = result["warmup_s"]
    for name, mem in result["rss"].items():
        if mem["end_mb"] is None:
            out.append(
                (
                    f"RSS of {name}: last tenth / after warm-up",
                    f"gone before the end / {mem['start_mb']:.0f} MB",
                    "running",
                    False,
                )
            )
            continue
        out.append((f"RSS of {name}: last tenth / after warm-up",
                    f"{mem['end_mb']:.0f} / {mem['start_mb']:.0f} MB ({mem['growth']:+.1%}; "
                    f"{mem['slope_mb_per_hour']:+.1f} MB/h)", f"≤ {RSS_GROWTH:+.0%}",
                    mem["growth"] <= RSS_GROWTH))  # fmt: skip
    windows = [w for w in result["windows"] if w["at"] > warm]
    p99 = result["p99"]
    out.append((f"worst p99 of a {result['window_s']:g} s window after warm-up",
                f"{p99['worst_ms']:g} ms", f"≤ {result['budget_ms']:g} ms",
                bool(windows) and p99["worst_ms"] <= result["budget_ms"]))  # fmt: skip
    out.append(("p99, last third / first third (medians of windows)",
                f"{p99['last_ms']:g} / {p99['first_ms']:g} ms", f"≤ {P99_DRIFT:g}×",
                p99["last_ms"] <= P99_DRIFT * p99["first_ms"]))  # fmt: skip
    r = result["records"]
    out.append(
        (
            "records answered / archived rows / distinct keys / answers received",
            f"{r['answered']:,} / {r['rows']:,} / {r['distinct']:,} / {r['received']:,}",
            "all equal",
            len({r["answered"], r["rows"], r["distinct"], r["received"]}) == 1,
        )
    )
    out.append(("failed requests, records dropped by the archive",
                f"{result['failures']}, {r['dropped']}", "0, 0",
                result["failures"] == 0 and r["dropped"] == 0))  # fmt: skip
    out.append(("shadow and archive process restarts", r["shadow_restarts"], "0",
                r["shadow_restarts"] == 0))  # fmt: skip
    labels = result["labels"]
    out.append(("labels posted / accepted", f"{labels['posted']:,} / {labels['accepted']:,}",
                "all accepted",
                labels["posted"] > 0 and labels["posted"] == labels["accepted"]))  # fmt: skip
    e = result["experiment"]
    test = e.get("test") or {}
    out.append(("the canary at the end: share, labels in its test, errors",
                f"{e.get('share')}, {test.get('labels_canary', 0):,}, "
                f"{e.get('error') or e.get('rolled_back') or 'none'}",
                f"{result['canary_share']:g}, > 0, none",
                e.get("share") == result["canary_share"] and test.get("labels_canary", 0) > 0
                and not e.get("error") and not e.get("rolled_back")))  # fmt: skip
    return out


def _memory(samples: list[dict], warm: float, end: float) -> dict:
    """Each process's RSS after the warm-up, at the end, and its slope."""
    tenth = max((end - warm) / 9, SAMPLE_SECONDS)
    out = {}
    for name in {n for s in samples for n in s["rss"]}:
        points = [(s["t"], s["rss"][name]) for s in samples if name in s["rss"]]
        after = [mb for t, mb in points if warm <= t <= warm + tenth]
        last = [mb for t, mb in points if t >= end - tenth]
        fit = [(t, mb) for t, mb in points if t >= warm]
        if after and not last:  # it ran after the warm-up and was gone at the end
            out[name] = {"start_mb": round(statistics.median(after), 1), "end_mb": None,
                         "growth": None, "slope_mb_per_hour": None}  # fmt: skip
            continue
        if not after or len(fit) < 2:
            continue
        slope = statistics.linear_regression(*zip(*fit, strict=True)).slope * 3600
        start, stop = statistics.median(after), statistics.median(last)
        out[name] = {"start_mb": round(start, 1), "end_mb": round(stop, 1),
                     "growth": round(stop / start - 1, 4),
                     "slope_mb_per_hour": round(slope, 1)}  # fmt: skip
    return out


def _p99(windows: list[dict], warm: float) -> dict:
    after = [w["p99_ms"] for w in windows if w["at"] > warm] or [0.0]
    third = max(1, len(after) // 3)
    return {"worst_ms": max(after), "first_ms": statistics.median(after[:third]),
            "last_ms": statistics.median(after[-third:])}  # fmt: skip


def run(env_file: Path, minutes: float, rate: float, canary: float, labelled: float,
        window: float, scratch: Path, connections: int = 20) -> dict:  # fmt: skip
    drill = Drill(env_file, scratch)
    store = drill.store
    client = store.client()
    champion = client.get_model_version(store.model_name, drill.champion)
    twin = register_candidate(store, _build_of(client, champion), champion.tags["candidate"])
    client.set_registered_model_alias(store.model_name, CANARY_ALIAS, twin)
    seconds = minutes * 60
    experiment = {"share": canary, "alias": CANARY_ALIAS}
    server = drill.serve("soak", experiment=experiment)
    records = json.loads(drill.payload.read_text())
    result = {
        "machine": machine(),
        "minutes": minutes,
        "rate": rate,
        "canary_share": canary,
        "labelled_share": labelled,
        "window_s": window,
        "budget_ms": drill.budget,
        "champion": drill.champion,
        "canary": twin,
        "shadow": drill.shadow,
        "warmup_s": max(min(120.0, seconds / 2), seconds / 10),
    }
    samples: list[dict] = []
    windows: list[dict] = []
    labeller = Labeller(server.url, records, drill.outcomes, rate * labelled)
    args = [sys.executable, "-m", "nbmlops.tools.openloop", server.url, str(drill.payload),
            "--rate", str(rate * (1 - labelled)), "--seconds", str(seconds),
            "--connections", str(connections), "--window", str(window)]  # fmt: skip
    stop = threading.Event()
    try:
        load = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        start = time.monotonic()
        labeller.start()
        sampler = threading.Thread(target=_sample, daemon=True,
                                   args=(server, load.pid, start, samples, stop))  # fmt: skip
        sampler.start()
        for line in load.stdout:
            windows.append(json.loads(line))
            _progress(windows[-1], samples, seconds)
        if load.wait() != 0:
            raise RuntimeError("the open-loop client failed")
        labeller.stop.set()
        labeller.join(60)
        stop.set()
        sampler.join(30)
        time.sleep(2 * SAMPLE_SECONDS)  # the archive's process hands its last rows on
        text = _get(server.url + "/metrics")[1].decode()
        answered = answered_records(server.url)
        models = _models(server.url)
    finally:
        stop.set()
        server.stop()
    rows, distinct = archive_rows(scratch / "archive")
    end = samples[-1]["t"] if samples else seconds
    warm = result["warmup_s"]
    result |= {
        "windows": windows, "samples": samples,
        "requests": sum(w["requests"] for w in windows) + labeller.answered
        + sum(labeller.failed.values()),
        "failures": sum(w["failures"] for w in windows) + sum(labeller.failed.values()),
        "failure_kinds": sorted({k for w in windows for k in w["failure_kinds"]})
        + [f"{n}× {k}" for k, n in labeller.failed.items()],
        "rss": _memory(samples, warm, end),
        "p99": _p99(windows, warm),
        "records": {"answered": answered, "rows": rows, "distinct": distinct,
                    "received": sum(w["requests"] - w["failures"] for w in windows)
                    + labeller.answered,
                    "dropped": int(metric(text, "nbmlops_archive_dropped_records_total")),
                    "shadow_restarts": int(metric(text, "nbmlops_shadow_restarts_total"))},
        "labels": {"posted": sum(labeller.statuses.values()) + labeller.failed.get(
                       "feedback HTTP 503", 0),
                   "accepted": labeller.statuses.get("accepted", 0),
                   "statuses": dict(labeller.statuses)},
        "experiment": models.get("experiment", {}),
    }  # fmt: skip
    return result


def _sample(server: Process, client: int, start: float, samples: list, stop) -> None:
    """Every SAMPLE_SECONDS: the RSS of each process and the service's counters."""
    names = {server.proc.pid: "service", client: "load client",
             os.getpid(): "soak (labels sender)"}  # fmt: skip
    while not stop.wait(SAMPLE_SECONDS):
        rss = {}
        for pid in [*family(server.proc.pid), client, os.getpid()]:
            if pid not in names:  # the service's children, by role: a restarted one
                names[pid] = role(pid)  # goes on in the same series
            if (mb := rss_mb(pid)) is not None:
                rss[names[pid]] = round(mb, 1)
        text = _get(server.url + "/metrics", timeout=5)[1].decode()
        test = _models(server.url).get("experiment", {}).get("test", {})
        samples.append({"t": round(time.monotonic() - start, 1), "rss": rss,
                        "records": metric(text, "nbmlops_records_total"),
                        "canary_share": metric(text, "nbmlops_canary_share"),
                        "labels_canary": test.get("labels_canary", 0),
                        "labels_champion": test.get("labels_champion", 0),
                        "decision": test.get("decision")})  # fmt: skip


def _models(url: str) -> dict:
    """The service's /models; what it said when that is not JSON (an error page)."""
    status, body = _get(url + "/models", timeout=5)
    try:
        return json.loads(body)
    except ValueError:
        return {"error": f"/models answered HTTP {status}: {body[:200]!r}"}


def _progress(window: dict, samples: list[dict], seconds: float) -> None:
    last = samples[-1] if samples else {"rss": {}}
    memory = ", ".join(f"{name} {mb:.0f} MB" for name, mb in last["rss"].items())
    print(f"{window['at'] / 60:5.1f} of {seconds / 60:g} min: {window['throughput_rps']} req/s, "
          f"p50 {window['p50_ms']} ms, p99 {window['p99_ms']} ms, {window['failures']} failed; "
          f"{memory}", flush=True)  # fmt: skip


def markdown(result: dict) -> str:
    """The soak's verdicts and the experiment it ran, as Markdown."""
    lines = ["# Soak test of the scoring service", "",
             f"Machine: {result['machine']}. {result['rate']:g} requests/s for "
             f"{result['minutes']:g} min on loopback, one record per request: champion "
             f"v{result['champion']}, shadow v{result['shadow']}, a {result['canary_share']:.0%} "
             f"canary (v{result['canary']}, a second version of the champion's candidate), and "
             f"{result['labelled_share']:.0%} of the requests labelled through /feedback "
             f"{LABEL_DELAY:g} s after their answer. Warm-up: the first "
             f"{result['warmup_s']:g} s. {result['requests']:,} requests.", "",
             "| check | value | target | met |", "|---|---|---|---|"]  # fmt: skip
    for label, value, target, ok in verdicts(result):
        lines.append(f"| {label} | {value} | {target} | {'yes' if ok else 'no'} |")
    test = result["experiment"].get("test")
    if test:
        lines += ["", f"The experiment at the end: {test['decision']}, "
                  f"{test['labels_canary']:,} canary and {test['labels_champion']:,} champion "
                  f"labels; canary share {result['experiment'].get('share')}."]  # fmt: skip
    if result["failure_kinds"]:
        lines += ["", "Failures: " + "; ".join(result["failure_kinds"])]
    return "\n".join(lines) + "\n"


def figures(result: dict) -> list[str]:
    """Memory of every process, and latency and labels, against time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .. import html

    samples, out = result["samples"], []
    fig, ax = plt.subplots(figsize=(8, 4))
    for name in sorted({n for s in samples for n in s["rss"]}):
        points = [(s["t"] / 60, s["rss"][name]) for s in samples if name in s["rss"]]
        ax.plot(*zip(*points, strict=True), label=name)
    ax.axvline(result["warmup_s"] / 60, color="grey", linestyle=":", label="end of warm-up")
    ax.set(xlabel="minutes", ylabel="resident memory (MB)", ylim=(0, None),
           title="Memory of every process")  # fmt: skip
    ax.legend(fontsize="small")
    out.append(html.figure(fig))
    plt.close(fig)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    at = [w["at"] / 60 for w in result["windows"]]
    top.plot(at, [w["p99_ms"] for w in result["windows"]], label="p99")
    top.plot(at, [w["p50_ms"] for w in result["windows"]], label="p50")
    top.axhline(result["budget_ms"], color="grey", linestyle="--", label="latency budget")
    top.set(ylabel="ms", yscale="log", title=f"Latency per {result['window_s']:g} s window")
    top.legend(fontsize="small")
    t = [s["t"] / 60 for s in samples]
    bottom.plot(t, [s["labels_canary"] for s in samples], label="canary")
    bottom.plot(t, [s["labels_champion"] for s in samples], label="champion")
    bottom.set(xlabel="minutes", ylabel="labels in the test", title="The experiment's labels")
    bottom.legend(fontsize="small")
    out.append(html.figure(fig))
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="env.yaml", type=Path)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=300.0, help="requests per second")
    parser.add_argument("--canary", type=float, default=0.1, help="share of the canary")
    parser.add_argument("--labelled", type=float, default=0.05,
                        help="share of the requests labelled through /feedback")  # fmt: skip
    parser.add_argument("--window", type=float, default=30.0, help="seconds per latency window")
    parser.add_argument("--out", type=Path, help="default: the env's reports folder, then soak/")
    args = parser.parse_args(argv)
    out = args.out or Layout.from_env(args.env).reports / SOAK_PAGES
    scratch = Path(tempfile.mkdtemp(prefix="nbmlops-soak-"))
    try:
        result = run(args.env, args.minutes, args.rate, args.canary, args.labelled,
                     args.window, scratch)  # fmt: skip
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(publish(out, "soak", "Soak test", result, markdown(result), figures(result)))
    return 0 if all(ok for *_, ok in verdicts(result)) else 1


if __name__ == "__main__":
    sys.exit(main())
