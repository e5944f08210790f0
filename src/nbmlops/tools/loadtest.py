"""`make load`: the scoring service under real load (an open-loop client and locust), on loopback.

Each run starts a real server process and drives it at a fixed request rate, with the open-loop
client of `nbmlops.tools.openloop` (latencies) or with locust (where answers are checked):

- the service with shadow scoring on, then off, and `mlflow models serve` on the same champion
  model, the baseline, in the same run (open loop);
- the service with shadow scoring on again under locust, and each generator against `/health`
  alone: what the generator itself adds to its figures;
- the service while the registry's `champion` alias moves back and forth `--moves` times (locust);
- the service with latency injected into the champion (a drill): every answer must come from
  the fallback, within the budget (locust, which checks each answer's role);
- a saturation curve: p99 against offered rate, for the service (one shadow) and for
  `mlflow models serve`, each up to the first rate whose p99 passes CURVE_P99_MS (open loop);
- in process, one record scored by the champion as a pipeline, fused and compiled.

Alias moves happen in a copy of the registry (the real champion never moves). Writes
`load.json`, `load.md` and `index.html` into the output folder (the reports folder's load/),
with throughput, p50, p99 and errors per run, and the archive's size per million requests.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pandas as pd
import yaml

from ..abtest import CANARY_ARM
from ..errors import ConfigError
from ..layout import LOAD_PAGES, Layout
from ..records import read_archive
from ..registry.loading import load_serving
from ..registry.runs import register_candidate
from ..registry.store import Store
from ..registry.versions import CHALLENGER, CHAMPION, set_champion
from ..serving.payload import RequestContract
from ..spec import FeatureSpec
from .bench import publish

BIN = Path(sys.executable).parent
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
#: p99 the service must keep with one shadow at the offered rate (open-loop client).
TARGET_P99_MS = 10.0
#: The saturation curve's limit: the highest offered rate with a p99 at most this.
CURVE_P99_MS = 20.0
#: Offered rates of the saturation curve, requests per second.
RATES = (25, 50, 100, 200, 400, 800, 1200, 1600, 2400, 3200)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine() -> str:
    return f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


class Process:
    """A server process started in its own session, ready when `ready_path` answers 200."""

    def __init__(self, args: list[str], port: int, ready_path: str, log: Path, env: dict):
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 180
        while _get(self.url + ready_path)[0] != 200:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{args[0]} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.25)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def locust(url: str, payload: Path, rate: float, seconds: int, users: int, prefix: Path,
           fmt: str = "nbmlops", expect_role: str | None = None) -> dict:  # fmt: skip
    """One headless locust run; throughput, p50, p99, max and failures of all its requests."""
    env = os.environ | {"NBMLOPS_LOAD_PAYLOAD": str(payload), "NBMLOPS_LOAD_FORMAT": fmt,
                        "NBMLOPS_LOAD_RATE": str(rate / users)}  # fmt: skip
    if expect_role:
        env["NBMLOPS_LOAD_EXPECT_ROLE"] = expect_role
    args = [str(BIN / "locust"), "-f", str(LOCUSTFILE), "--headless", "--host", url,
            "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--csv", str(prefix),
            "--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0"]  # fmt: skip
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=seconds + 120)
    if done.returncode != 0:
        raise RuntimeError(f"locust failed:\n{done.stderr[-3000:]}")
    with open(f"{prefix}_stats.csv", newline="") as fh:
        total = next(r for r in csv.DictReader(fh) if r["Name"] == "Aggregated")
    failures = []
    with open(f"{prefix}_failures.csv", newline="") as fh:
        failures = [f"{r['Occurrences']}× {r['Error']}" for r in csv.DictReader(fh)]
    return {
        "requests": int(total["Request Count"]),
        "failures": int(total["Failure Count"]),
        "throughput_rps": round(float(total["Requests/s"]), 1),
        "p50_ms": float(total["50%"]),
        "p99_ms": float(total["99%"]),
        "max_ms": round(float(total["Max Response Time"]), 1),
        "failure_kinds": failures[:5],
    }


def open_loop(url: str, payload: Path, rate: float, seconds: int, connections: int,
              fmt: str = "nbmlops") -> dict:  # fmt: skip
    """One run of the open-loop client in its own process; the same figures as `locust`."""
    args = [sys.executable, "-m", "nbmlops.tools.openloop", url, str(payload), "--rate",
            str(rate), "--seconds", str(seconds), "--connections", str(connections),
            "--format", fmt]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120)
    if done.returncode != 0:
        raise RuntimeError(f"the open-loop client failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


class Drill:
    """A scratch project: the env file pointed at a copy of the registry, three models in it."""

    def __init__(self, env_file: Path, scratch: Path, records: int = 1000):
        layout = Layout.from_env(env_file)
        env = layout.env
        uri = Store.from_params(env["mlflow"], str(env_file)).tracking_uri
        if not uri.startswith("sqlite:///"):
            raise ConfigError(f"make load moves aliases in a copy of the embedded store; "
                              f"{uri} is not one (unset MLFLOW_TRACKING_URI)")  # fmt: skip
        self.scratch = scratch
        db = scratch / "mlflow.db"
        shutil.copy2(uri.removeprefix("sqlite:///"), db)
        self.store = Store(f"sqlite:///{db}", env["mlflow"]["artifact_root"],
                           env["mlflow"]["model_name"])  # fmt: skip
        raw = yaml.safe_load(env_file.read_text(encoding="utf-8"))
        raw["mlflow"] = {"tracking_uri": self.store.tracking_uri,
                         "artifact_root": self.store.artifact_root,
                         "model_name": self.store.model_name}  # fmt: skip
        raw["products"] = env["products"]
        raw["contract"] = env.get("contract")
        raw["serving"] = (env.get("serving") or {}) | {"archive": str(scratch / "archive")}
        self.budget = float(raw["serving"].get("latency_budget_ms", 50.0))
        self.env_file = scratch / "env.load.yaml"
        self.env_file.write_text(yaml.safe_dump(raw))
        self.candidates = [candidate["name"] for candidate in layout.candidates]
        self.champion, self.other, self.shadow = self._roles()
        spec = FeatureSpec.read(layout.product("features", "spec"))
        holdout = pd.read_parquet(layout.product("ingest", "holdout"))
        sample = holdout.sample(min(records, len(holdout)), random_state=0)
        self.payload = scratch / "records.json"
        self.payload.write_text(json.dumps(RequestContract(spec).example(sample, len(sample))))
        #: each record's true outcome (0 or 1), for labels sent back (`make soak`)
        self.outcomes = [int(v) for v in sample[spec.target]]

    def _roles(self) -> tuple[str, str, str]:
        """Champion with a fallback and a challenger (the shadow) that differ from it, as in
        production."""
        client = self.store.client()
        found = client.get_registered_model(self.store.model_name)
        aliases = {a: str(v) for a, v in found.aliases.items()}
        champion = aliases.get(CHAMPION) or aliases.get(CHALLENGER)
        if champion is None:
            raise ConfigError(f"model {self.store.model_name!r} has no version; run a build")
        meta = client.get_model_version(self.store.model_name, champion)
        build = _build_of(client, meta)
        # versions of the champion's own build: one of an older build may take other inputs
        # (a feature since derived in the model) and could not score today's requests
        found = client.search_model_versions(f"name='{self.store.model_name}'")
        others = [str(v.version) for v in found
                  if str(v.version) != champion and _build_of(client, v) == build]  # fmt: skip
        if not others:
            for name in self.candidates:
                if name != meta.tags.get("candidate"):
                    others.append(register_candidate(self.store, build, name))
        if not others:
            raise ConfigError(f"the load test serves a fallback and a shadow beside the champion: "
                              f"{self.store.model_name!r} has one version and the env file one "
                              "candidate; declare a second candidate and build")  # fmt: skip
        set_champion(self.store, champion, [others[0], champion])
        client.set_registered_model_alias(self.store.model_name, CHALLENGER, others[-1])
        return champion, others[0], others[-1]

    def serve(self, name: str, *args: str, **serving) -> Process:
        env_file = self.env_file
        if serving:
            raw = yaml.safe_load(self.env_file.read_text())
            raw["serving"] |= serving
            env_file = self.scratch / f"env.{name}.yaml"
            env_file.write_text(yaml.safe_dump(raw))
        port = free_port()
        return Process([str(BIN / "nbmlops-serve"), "--env", str(env_file), "--port", str(port),
                        *args], port, "/ready", self.scratch / f"{name}.log",
                       os.environ | {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})  # fmt: skip

    def mlflow_serve(self) -> Process:
        port = free_port()
        model = f"models:/{self.store.model_name}/{self.champion}"
        env = os.environ | {"MLFLOW_TRACKING_URI": self.store.tracking_uri,
                            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
                            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
        return Process([str(BIN / "mlflow"), "models", "serve", "-m", model, "--env-manager",
                        "local", "-h", "127.0.0.1", "-p", str(port)], port, "/ping",
                       self.scratch / "mlflow-serve.log", env)  # fmt: skip


def _build_of(client, version) -> str | None:
    """The build that registered a version (its tag, else its run's)."""
    return version.tags.get("build_id") or client.get_run(version.run_id).data.tags.get("build_id")


def _models(url: str) -> dict:
    return json.loads(_get(url + "/models")[1] or b"{}")


def move_champion(drill: Drill, server: Process, moves: int, limit: float = 20.0) -> dict:
    """Move `champion` between two versions `moves` times, each seen served before the next."""
    seen, start = [], time.perf_counter()
    for i in range(moves):
        version, before = ((drill.other, drill.champion) if i % 2 == 0
                           else (drill.champion, drill.other))  # fmt: skip
        set_champion(drill.store, version, [before, version])
        moved = time.perf_counter()
        while _models(server.url).get("serving", {}).get("champion") != version:
            if time.perf_counter() - moved > limit:
                raise RuntimeError(f"move {i + 1}: v{version} not served after {limit} s")
            time.sleep(0.02)
        seen.append(time.perf_counter() - moved)
    seen.sort()
    return {"moves": moves, "seconds": round(time.perf_counter() - start, 1),
            "median_seen_after_s": round(seen[len(seen) // 2], 3),
            "max_seen_after_s": round(seen[-1], 3)}  # fmt: skip


def swaps_under_load(drill: Drill, server: Process, rate: float, users: int, moves: int,
                     scratch: Path, lead: float = 5.0) -> tuple[dict, dict]:  # fmt: skip
    """Locust for a fixed time; meanwhile, after `lead` seconds, `champion` moves `moves` times."""
    import threading

    duration = int(2 * lead + moves * 0.5)
    found: dict = {}

    def mover():
        time.sleep(lead)
        try:
            found.update(move_champion(drill, server, moves))
        except RuntimeError as exc:
            found["error"] = str(exc)
        found["done_at"] = time.perf_counter()

    start = time.perf_counter()
    thread = threading.Thread(target=mover, daemon=True)
    thread.start()
    load = locust(server.url, drill.payload, rate, duration, users, scratch / "swaps")
    thread.join(120)
    found["all_under_load"] = found.get("done_at", float("inf")) - start <= duration
    found.pop("done_at", None)
    found["swaps_served"] = _models(server.url).get("swaps")
    return load, found


def answered_records(url: str) -> int:
    """Records the service says it answered (its Prometheus counter)."""
    text = _get(url + "/metrics")[1].decode()
    line = next(ln for ln in text.splitlines() if ln.startswith("nbmlops_records_total "))
    return int(float(line.split()[1]))


def archive_size(folder: Path, records: int) -> dict:
    """Files, rows and bytes of the archive; `records`: what the service answered."""
    files = sorted(folder.glob("*.parquet"))
    size = sum(f.stat().st_size for f in files)
    rows = sum(len(pd.read_parquet(f, columns=["record"])) for f in files)
    per_million = size / rows * 1_000_000 if rows else None
    return {"files": len(files), "records": rows, "records_answered": records, "bytes": size,
            "mb_per_million_requests": round(per_million / 2**20, 1) if rows else None}  # fmt: skip


def call_times(drill: Drill, calls: int = 300) -> dict:
    """Median time of one record scored in process by the champion in each of its forms."""
    from ..serving.fused import Fused, fuse
    from ..serving.rendezvous import check_rows, serving_form

    model, compiled, note = load_serving(drill.store, drill.champion)
    spec = FeatureSpec.read(Layout.from_env(drill.env_file).product("features", "spec"))
    records = json.loads(drill.payload.read_text())
    frame = RequestContract(spec).frame(records)[spec.columns]
    sample = check_rows(spec.columns, frame)
    served = serving_form(drill.champion, model, compiled, note, sample)
    forms = {"pipeline": model}
    fused = served.model if served.form == "fused" else fuse(model, sample)
    if isinstance(fused, Fused):
        forms["fused"] = fused
    if served.form.startswith("compiled"):
        forms[served.form] = served.model
    scorers = {name: (lambda i, m=m: m.predict_proba(frame.iloc[[i % len(frame)]]))
               for name, m in forms.items()}  # fmt: skip
    if served.form.startswith("compiled"):  # as the service calls it: from the request's record
        scorers[f"{served.form}, from records"] = lambda i: served.model.predict_records(
            records[i % len(records) : i % len(records) + 1]
        )
    out = {}
    for name, score in scorers.items():
        times = []
        for i in range(calls):
            start = time.perf_counter()
            score(i)
            times.append(time.perf_counter() - start)
        out[name] = round(sorted(times)[calls // 2] * 1000, 3)
    return {"ms": out, "served_form": served.form, "why_not_compiled": served.note}


def saturation(drill: Drill, rates, seconds: int, scratch: Path) -> dict:
    """p99 against offered rate for the service (one shadow) and `mlflow models serve`: each
    server takes rising rates until its p99 passes CURVE_P99_MS or requests fail (open loop)."""
    curves = {}
    for name, start, fmt in (("service", lambda: drill.serve("curve"), "nbmlops"),
                             ("mlflow models serve", drill.mlflow_serve, "mlflow")):  # fmt: skip
        server, points = start(), []
        try:
            for rate in rates:
                r = open_loop(server.url, drill.payload, rate, seconds,
                              max(10, int(rate // 10)), fmt)  # fmt: skip
                points.append({"offered": rate, "throughput_rps": r["throughput_rps"],
                               "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
                               "failures": r["failures"]})  # fmt: skip
                print(f"curve {name}: {rate} req/s offered, {r['throughput_rps']} served, "
                      f"p99 {r['p99_ms']} ms", flush=True)  # fmt: skip
                if r["p99_ms"] > CURVE_P99_MS or r["failures"]:
                    break
        finally:
            server.stop()
        within = [p["offered"] for p in points if p["p99_ms"] <= CURVE_P99_MS
                  and not p["failures"]]  # fmt: skip
        curves[name] = {"points": points, "highest_rate_within_target": max(within, default=0)}
    mine, theirs = (curves[n]["highest_rate_within_target"]
                    for n in ("service", "mlflow models serve"))  # fmt: skip
    return {"curves": curves, "target_p99_ms": CURVE_P99_MS,
            "rate_ratio_vs_mlflow": round(mine / theirs, 2) if theirs else None}  # fmt: skip


def curve_figure(result: dict) -> str:
    """The saturation curves as an inline plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .. import html

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, curve in result["saturation"]["curves"].items():
        points = curve["points"]
        ax.plot([p["offered"] for p in points], [p["p99_ms"] for p in points], "o-", label=name)
    ax.axhline(CURVE_P99_MS, color="grey", linestyle="--", label=f"p99 {CURVE_P99_MS:g} ms")
    ax.set(xlabel="offered requests per second", ylabel="p99 latency (ms)", yscale="log",
           title="Saturation: p99 against offered rate, one record per request")  # fmt: skip
    ax.legend()
    out = html.figure(fig)
    plt.close(fig)
    return out


#: The canary run's declared share of records.
CANARY_SHARE = 0.1


def served_shares(folder: Path) -> dict:
    """Records of the archive by the arm that answered them, and the canary's share."""
    arms = read_archive(folder, ["request_id", "record", "served_arm"])["served_arm"]
    counts = {str(k): int(v) for k, v in arms.value_counts().items()}
    share = counts.get(CANARY_ARM, 0) / max(1, len(arms))
    return {"records": len(arms), "arms": counts, "canary_share": round(share, 4),
            "declared_share": CANARY_SHARE}  # fmt: skip


def run(env_file: Path, rate: float, seconds: int, users: int, moves: int, drill_ms: float,
        scratch: Path, rates=RATES, curve_seconds: int = 10) -> dict:  # fmt: skip
    drill = Drill(env_file, scratch)
    result = {"machine": machine(),
              "rate": rate, "seconds": seconds, "users": users, "budget_ms": drill.budget,
              "champion": drill.champion, "fallback": drill.other, "runs": {}}  # fmt: skip
    runs = result["runs"]
    result["call_ms"] = call_times(drill)
    print(f"one record in process: {result['call_ms']['ms']} ms", flush=True)

    def load(name, server, generator="open loop", length=seconds, **kw):
        if generator == "locust":
            r = locust(server.url, drill.payload, rate, length, users, scratch / name, **kw)
        else:
            r = open_loop(server.url, drill.payload, rate, length, users, **kw)
        runs[name] = r | {"generator": generator}
        print(f"{name} ({generator}): {r['throughput_rps']} req/s, p50 {r['p50_ms']} ms, "
              f"p99 {r['p99_ms']} ms, {r['failures']} failures of {r['requests']}",
              flush=True)  # fmt: skip

    for name, args in (("shadow on", ()), ("shadow off", ("--no-shadow",))):
        server = drill.serve(name.replace(" ", "-"), *args)
        try:
            load(name, server)
            if name == "shadow on":  # the same server under locust, and each generator's floor
                load("shadow on, locust", server, "locust")
                load("GET /health", server, length=curve_seconds, fmt="health")
                load("GET /health, locust", server, "locust", curve_seconds, fmt="health")
            answered = answered_records(server.url)
        finally:
            server.stop()
        if name == "shadow on":
            result["archive"] = archive_size(scratch / "archive", answered)
    shutil.rmtree(scratch / "archive", ignore_errors=True)
    server = drill.serve("canary", experiment={"share": CANARY_SHARE})
    try:
        load(f"canary {CANARY_SHARE:.0%}", server)
    finally:
        server.stop()
    result["canary"] = served_shares(scratch / "archive")
    print(f"canary: {result['canary']}", flush=True)
    baseline = drill.mlflow_serve()
    try:
        load("mlflow models serve", baseline, fmt="mlflow")
    finally:
        baseline.stop()
    server = drill.serve("swaps", poll_seconds=0.1)
    try:
        load_run, result["swaps"] = swaps_under_load(drill, server, rate, users, moves, scratch)
        runs["champion moves"] = load_run | {"generator": "locust"}
        print(f"champion moved {moves} times under load: {result['swaps']}", flush=True)
    finally:
        server.stop()
    set_champion(drill.store, drill.champion, [drill.other, drill.champion])
    server = drill.serve("fallback", "--drill-latency-ms", str(drill_ms))
    try:
        load("champion slowed (fallback answers)", server, "locust", expect_role="fallback")
    finally:
        server.stop()
    result["drill_latency_ms"] = drill_ms
    result["saturation"] = saturation(drill, rates, curve_seconds, scratch)
    on, off = runs["shadow on"], runs["shadow off"]
    result["p99_shadow_on_vs_off"] = round(on["p99_ms"] / off["p99_ms"], 2)
    result["p99_vs_mlflow"] = round(on["p99_ms"] / runs["mlflow models serve"]["p99_ms"], 2)
    result["throughput_vs_mlflow"] = round(
        on["throughput_rps"] / runs["mlflow models serve"]["throughput_rps"], 2
    )
    return result


def markdown(result: dict) -> str:
    """The load test as Markdown tables, each target with its verdict."""
    lines = ["# Load test of the scoring service", "",
             f"Machine: {result['machine']}. {result['rate']:g} requests/s offered on loopback, "
             f"{result['seconds']} s per run, one record per request, by the open-loop client "
             f"({result['users']} connections; latency from when a request was due) or by "
             f"locust ({result['users']} users). Champion v{result['champion']}, fallback "
             f"v{result['fallback']}, latency budget {result['budget_ms']:g} ms.", "",
             "| run | generator | requests | req/s | p50 ms | p99 ms | max ms | failures |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in result["runs"].items():
        lines.append(f"| {name} | {r['generator']} | {r['requests']} | {r['throughput_rps']} | "
                     f"{r['p50_ms']:g} | {r['p99_ms']:g} | {r['max_ms']:g} | "
                     f"{r['failures']} |")  # fmt: skip
    runs = result["runs"]
    on = runs["shadow on"]
    slow = result["runs"]["champion slowed (fallback answers)"]
    moves = result["runs"]["champion moves"]
    swaps = result["swaps"]
    canary = result["canary"]
    canary_run = f"canary {canary['declared_share']:.0%}"
    checks = [
        (f"p99 with one shadow at {result['rate']:g} req/s", f"{on['p99_ms']:g} ms",
         f"≤ {TARGET_P99_MS:g} ms", on["p99_ms"] <= TARGET_P99_MS and on["failures"] == 0),
        ("the same, measured by locust", f"{runs['shadow on, locust']['p99_ms']:g} ms", "", None),
        ("p99 of GET /health alone, open loop / locust: the generator's own floor",
         f"{runs['GET /health']['p99_ms']:g} ms / {runs['GET /health, locust']['p99_ms']:g} ms",
         "", None),
        ("p99 shadow on / off", result["p99_shadow_on_vs_off"], "", None),
        ("p99 / mlflow models serve", result["p99_vs_mlflow"], "", None),
        ("throughput / mlflow models serve", result["throughput_vs_mlflow"], "", None),
        (f"failed requests while champion moved {swaps.get('moves', 0)} times",
         moves["failures"], "0", moves["failures"] == 0 and swaps.get("all_under_load", False)
         and "error" not in swaps),
        ("move seen served after (median / max)",
         f"{swaps.get('median_seen_after_s')} s / {swaps.get('max_seen_after_s')} s", "", None),
        (f"champion slowed by {result['drill_latency_ms']:g} ms: answers not from the fallback",
         slow["failures"], "0", slow["failures"] == 0),
        ("champion slowed: p99", f"{slow['p99_ms']:g} ms", f"≤ {result['budget_ms']:g} ms",
         slow["p99_ms"] <= result["budget_ms"]),
        ("archive per million requests", f"{result['archive']['mb_per_million_requests']} MB",
         "", None),
        (f"{canary['declared_share']:.0%} canary: p99, failed requests",
         f"{runs[canary_run]['p99_ms']:g} ms, {runs[canary_run]['failures']}",
         f"≤ {result['budget_ms']:g} ms, 0",
         runs[canary_run]["p99_ms"] <= result["budget_ms"] and runs[canary_run]["failures"] == 0),
        ("canary: the share of records it answered", f"{canary['canary_share']:.2%}",
         f"{canary['declared_share']:.0%} ± 1 point",
         abs(canary["canary_share"] - canary["declared_share"]) <= 0.01),
    ]  # fmt: skip
    calls = result["call_ms"]
    curves = result["saturation"]["curves"]
    ratio = result["saturation"]["rate_ratio_vs_mlflow"]
    checks += [
        (f"one record in process, ms ({', '.join(calls['ms'])})",
         " / ".join(f"{v:g}" for v in calls["ms"].values()), "", None),
        ("form the service answers with", calls["served_form"], "compiled",
         calls["served_form"].startswith("compiled")),
        (f"highest offered rate with p99 ≤ {CURVE_P99_MS:g} ms: service / mlflow models serve",
         " / ".join(f"{c['highest_rate_within_target']} req/s" for c in curves.values()), "",
         None),
        ("that rate, service / mlflow models serve", ratio if ratio else "mlflow: none", "≥ 3",
         ratio is None and curves["service"]["highest_rate_within_target"] > 0
         or bool(ratio and ratio >= 3)),
    ]  # fmt: skip
    lines += ["", "| check | value | target | met |", "|---|---|---|---|"]
    for label, value, target, ok in checks:
        verdict = "" if ok is None else ("yes" if ok else "no")
        lines.append(f"| {label} | {value} | {target} | {verdict} |")
    lines += ["", "| server | offered req/s | served req/s | p50 ms | p99 ms | failures |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for name, curve in curves.items():
        lines += [f"| {name} | {p['offered']} | {p['throughput_rps']} | {p['p50_ms']:g} | "
                  f"{p['p99_ms']:g} | {p['failures']} |" for p in curve["points"]]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="env.yaml", type=Path)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second offered")
    parser.add_argument("--seconds", type=int, default=30, help="length of each run")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--moves", type=int, default=100, help="champion moves under load")
    parser.add_argument("--drill-latency-ms", type=float, default=200.0)
    parser.add_argument("--curve-seconds", type=int, default=10,
                        help="length of each run of the saturation curve")  # fmt: skip
    parser.add_argument("--out", type=Path, help="default: the env's reports folder, then load/")
    args = parser.parse_args(argv)
    out = args.out or Layout.from_env(args.env).reports / LOAD_PAGES
    scratch = Path(tempfile.mkdtemp(prefix="nbmlops-load-"))
    try:
        result = run(args.env, args.rate, args.seconds, args.users, args.moves,
                     args.drill_latency_ms, scratch, curve_seconds=args.curve_seconds)  # fmt: skip
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(publish(out, "load", "Load test", result, markdown(result), [curve_figure(result)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
