"""`make bench`: what the pipeline costs on top of its work, as ratios measured in one run.

Every figure is a median over repeats and is set against a baseline timed in the same run,
because shared machines are noisy:

- a cold `ploomber build` against (a) a plain sequential papermill loop over the same rendered
  notebooks and (b) the same notebook code run as one plain Python process; the cold build is
  timed with both notebook executors (ploomber-engine, the default, and papermill);
- a no-op rebuild and a rebuild after editing one notebook, against the cold build;
- `make backtest` of the env's policies on the cold build's data, against the cold build,
  with how much of the workers' time the candidates' fits filled;
- the candidate grid run at once against the same three tasks one after another;
- the score and monitor tasks' code on one batch of 100k, 1M and 5M rows (scaled-up flights,
  `nbmlops.scaleup`): champion and challenger score every row, then the monitor's report;
  wall time, peak memory and report size, against the 100k batch;
- `nbmlops init` on a 1M-row CSV that is not flights (`scaleup.user_table`): wall time and
  peak memory, against reading the same file with `pandas.read_csv` in the same run;
- setup: a fresh clone of the committed project to a ready environment (`make setup`).

Writes `bench.json`, `bench.md` and `index.html` into the output folder (reports/bench).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from .. import html, session, storage
from ..layout import BENCH_PAGES, Layout

#: What a copy of the project needs to build: its own files, never products or stores.
PIPELINE_FILES = [
    "pipeline.yaml",
    "env.yaml",
    "env.ci.yaml",
    "notebooks",
    "features",
    "contracts",
    "model",
    "requirements.lock",
]
BIN = Path(sys.executable).parent
ROWS = (100_000, 1_000_000, 5_000_000)
INIT_ROWS = 1_000_000


def copy_pipeline(project: Path, dest: Path) -> Path:
    """The pipeline's own files in `dest`, so a build there never touches the real products."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PIPELINE_FILES:
        src = project / name
        if src.is_dir():
            ignore = shutil.ignore_patterns("*.ipynb", "__pycache__")
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)
    return dest


def build_env(env_file: str | None = None) -> dict[str, str]:
    """The environment of a build started here: telemetry off, no user's tracking server, and
    an id of its own (not one this process inherited from a build)."""
    dropped = {"MLFLOW_TRACKING_URI", session.BUILD_ID}
    outside = {k: v for k, v in os.environ.items() if k not in dropped}
    env = outside | {
        "PLOOMBER_STATS_ENABLED": "false",
        "PLOOMBER_VERSION_CHECK_DISABLED": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    return env | {"PLOOMBER_ENV_FILENAME": env_file} if env_file else env


def timed(args: list[str], cwd: Path, env_file: str) -> float:
    """Wall seconds of one command; a failure stops the benchmark with its output."""
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=build_env(env_file), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")
    return seconds


def run_baseline(project: Path, env_file: str, mode: str) -> None:
    """The pipeline's notebooks without Ploomber: papermill one by one, or one Python process.

    Notebooks are rendered with the env's parameters (Ploomber only renders; it runs nothing),
    then executed in build order; the function task is called directly.
    """
    import nbformat
    import papermill
    from ploomber.spec import DAGSpec
    from ploomber.tasks import NotebookRunner

    dag = DAGSpec(str(project / "pipeline.yaml"), env=str(project / env_file)).to_dag()
    dag.render(force=True, show_progress=False)
    work = Path(tempfile.mkdtemp(prefix="baseline-"))
    for name in dag:  # DAG iteration is build order
        task = dag[name]
        if isinstance(task, NotebookRunner):
            nb = nbformat.reads(task.source.nb_str_rendered, as_version=4)
            executed = Path(str(task.product["nb"]))  # the index task publishes it
            executed.parent.mkdir(parents=True, exist_ok=True)
            if mode == "papermill":
                path = work / f"{name}.ipynb"
                nbformat.write(nb, path)
                papermill.execute_notebook(str(path), str(executed), progress_bar=False,
                                           cwd=project)  # fmt: skip
            else:
                code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
                exec(compile(code, name, "exec"), {"__name__": name})  # noqa: S102
                nbformat.write(nb, executed)
        else:  # a function task: its params already hold product and upstream
            task.source.primitive(**task.params.to_dict())
    shutil.rmtree(work, ignore_errors=True)


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


#: The builds bench times on ploomber-engine whatever the env file says (the CI sample runs on
#: papermill); `cold_kernels` is the same build on papermill.
ENGINE = ("--env--notebook_executor", "ploomber-engine")


def bench_builds(project: Path, env_file: str, repeats: int, scratch: Path) -> dict:
    """Cold build, both baselines, no-op and edit rebuilds, medians over `repeats`. The builds
    run as `make build` runs them (`nbmlops.build.run`); each cold build is followed by a
    no-op build of the same copy with the same executor."""
    kinds = ("cold", "cold_kernels", "papermill", "script")
    runs: dict[str, list[float]] = {k: [] for k in (*kinds, "noop", "noop_kernels", "edit")}
    python = str(BIN / "python")
    make_build = [python, "-m", "nbmlops.build.run", "--env", env_file]
    executor = {"cold": [*make_build, *ENGINE],
                "cold_kernels": [*make_build, "--env--notebook_executor", "papermill"]}  # fmt: skip
    noop = {"cold": "noop", "cold_kernels": "noop_kernels"}
    for i in range(repeats):
        for kind in kinds:
            copy = copy_pipeline(project, scratch / f"{kind}-{i}")
            baseline = [python, "-m", "nbmlops.tools.bench", "baseline", kind, "--env", env_file]
            runs[kind].append(timed(executor.get(kind, baseline), copy, env_file))
            print(f"[{i + 1}/{repeats}] {env_file} {kind}: {runs[kind][-1]:.1f} s", flush=True)
            if kind in noop:
                runs[noop[kind]].append(timed(executor[kind], copy, env_file))
        built = scratch / f"cold-{i}"
        notebook = built / "notebooks" / "monitor.py"
        notebook.write_text(notebook.read_text() + '\n# %%\nprint("edited")\n')
        runs["edit"].append(timed(executor["cold"], built, env_file))
    med = {k: _median(v) for k, v in runs.items()}
    tasks = 10
    return {
        "env": env_file,
        "repeats": repeats,
        "seconds": med,
        "runs": runs,
        "cold_vs_papermill": round(med["cold"] / med["papermill"], 3),
        "kernels_vs_papermill": round(med["cold_kernels"] / med["papermill"], 3),
        "overhead_per_task_vs_script": round((med["cold"] - med["script"]) / tasks, 2),
        "noop_vs_cold": round(med["noop"] / med["cold"], 3),
        "noop_vs_cold_kernels": round(med["noop_kernels"] / med["cold_kernels"], 3),
        "edit_vs_cold": round(med["edit"] / med["cold"], 3),
    }


#: The backtest's budget on two cores, by env file: the CI sample and the full year.
BACKTEST_BUDGET = {"env.ci.yaml": 120.0, "env.yaml": 600.0}


def bench_backtest(built: Path, env_file: str, cold_seconds: float) -> dict:
    """Every policy of the env's backtest block replayed once on a built copy's data."""
    out = built / "backtest-bench"
    args = [str(BIN / "python"), "-m", "nbmlops.commands.backtest", "--env", env_file,
            "--out", str(out)]  # fmt: skip
    seconds = timed(args, built, env_file)
    found = storage.read_json(out / "backtest.json")
    inner = found["seconds"]
    busy = inner["fit_seconds"] / (inner["total"] * inner["workers"])  # fitting, of their time
    print(f"{env_file} backtest: {seconds:.1f} s", flush=True)
    return {"env": env_file, "seconds": round(seconds, 1), "policies": len(found["policies"]),
            "periods": len(found["settings"]["periods"]) - found["settings"]["reference_periods"],
            "fits": inner["fits"], "workers": inner["workers"],
            "vs_cold_build": round(seconds / cold_seconds, 2),
            "workers_busy": round(busy, 2),
            "budget": BACKTEST_BUDGET.get(Path(env_file).name)}  # fmt: skip


def bench_grid(built: Path, env_file: str, repeats: int) -> dict:
    """The candidates' training tasks together against the same one after another, each in a
    process of its own; together, with the threads and priorities the build gives them."""
    names = [f"train-{c['name']}" for c in Layout.from_env(built / env_file).candidates]
    ploomber = str(BIN / "ploomber")
    serial, parallel = [], []
    from ploomber.spec import DAGSpec  # imports Ploomber; only the grid needs it

    from ..build.executor import THREAD_VARIABLES, priority_plan, read_seconds

    executor = DAGSpec(str(built / "pipeline.yaml"), env=str(built / env_file)).to_dag().executor
    seconds = read_seconds(executor.record)  # the cold build's
    nice = priority_plan({n: set() for n in names}, set(names), executor.cores,
                         executor.processes, seconds)  # fmt: skip
    env = build_env(env_file) | dict.fromkeys(THREAD_VARIABLES, "1")  # as the executor sets
    for _ in range(repeats):
        serial.append(sum(timed([ploomber, "task", n, "--force"], built, env_file) for n in names))
        start = time.perf_counter()
        procs = [subprocess.Popen([ploomber, "task", n, "--force"], cwd=built, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  preexec_fn=partial(os.nice, nice.get(n, 0)))
                 for n in names]  # fmt: skip
        if any(p.wait() != 0 for p in procs):
            raise RuntimeError("a candidate task failed in the parallel grid run")
        parallel.append(time.perf_counter() - start)
    speedup = round(statistics.median(serial) / statistics.median(parallel), 2)
    return {"serial": _median(serial), "parallel": _median(parallel), "speedup": speedup,
            "lower_priority": sorted(nice)}  # fmt: skip


def bench_setup(project: Path, scratch: Path) -> dict:
    """A fresh clone of the committed project to a ready environment (`make setup`)."""
    clone = scratch / "clone"
    subprocess.run(["git", "clone", "--quiet", str(project), str(clone)], check=True)
    seconds = timed(["make", "setup"], clone, "env.ci.yaml")
    print(f"setup from a fresh clone: {seconds:.1f} s", flush=True)
    return {"fresh_clone_to_ready_seconds": round(seconds, 1)}


def batch_file(env_file: Path, rows: int, folder: Path) -> Path:
    """A scaled-up batch of `rows` rows of a build's first batch month, as a batch file."""
    import pandas as pd

    from .. import derived
    from ..spec import BATCH, CONTROL, FeatureSpec
    from . import scaleup

    layout = Layout.from_env(env_file)
    spec = FeatureSpec.read(layout.product("features", "spec"))
    batches = pd.read_parquet(layout.product("ingest", "batches"))
    month = batches[batches[BATCH] == batches[BATCH].iloc[0]]
    path = folder / f"batch-{rows}.parquet"
    scaled = scaleup.scale_batch(month, spec, rows, seed=rows)[spec.columns + [spec.target]]
    scaled = derived.with_derived(scaled, spec)  # as the build's batch file holds them
    return storage.write_parquet(path, scaled.assign(**{BATCH: "scaled", CONTROL: ""}))


def monitor_once(env_file: Path, batch: Path, out: Path, max_rows: int) -> dict:
    """The score and monitor tasks' code on one batch file of a build: the served model and the
    challenger score every row, then the monitor judges the batch; figures of this process."""
    import pandas as pd

    from ..monitoring import monitor, scoring
    from ..monitoring.rules import MonitorRules
    from ..registry.store import Store
    from ..spec import REFERENCE, FeatureSpec

    layout = Layout.from_env(env_file)
    spec = FeatureSpec.read(layout.product("features", "spec"))
    store = Store.from_params(layout.env["mlflow"], str(env_file))
    challenger = storage.read_json(layout.product("evaluate", "best"))["version"]
    rules = MonitorRules.from_file(layout.env["gates"])
    holdout = layout.product("ingest", "holdout")
    (out / "reports").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    scored = scoring.score_files(store, challenger, [(REFERENCE, holdout), (None, batch)],
                                 spec, out / "scores.parquet", out / "archive")  # fmt: skip
    scoring_seconds = time.perf_counter() - start
    scoring_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    found = monitor.monitor_batches(
        out / "scores.parquet", pd.read_parquet(layout.product("ingest", "train")),
        pd.read_parquet(holdout), batch, scored.summary.to_dict(orient="records"),
        spec.as_seen_by_model(), out / "reports", "reports", rules, max_rows=max_rows,
    ).rows[0]  # fmt: skip
    return {
        "rows": found["rows"],
        "seconds": round(time.perf_counter() - start, 2),
        "scoring_seconds": round(scoring_seconds, 2),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "scoring_peak_mb": scoring_peak,
        "report_kb": (out / "reports" / "batch-scaled.html").stat().st_size // 1024,
        "drift_share": found["drift_share"],
        "roc_auc": found["roc_auc"],
    }


def bench_monitoring(env_file: Path, scratch: Path, max_rows: int, rows=ROWS) -> list[dict]:
    found = []
    for n in rows:
        out = scratch / f"monitor-{n}"
        # made in a process of its own: a process started from one that held the rows would
        # inherit its peak (Linux keeps the peak across fork and exec)
        made = subprocess.run(
            [str(BIN / "python"), "-m", "nbmlops.tools.bench", "batch", str(env_file), str(n),
             str(scratch)], capture_output=True, text=True, env=build_env("env.ci.yaml"),
        )  # fmt: skip
        if made.returncode != 0:
            raise RuntimeError(f"making the {n}-row batch failed:\n{made.stderr[-4000:]}")
        batch = Path(made.stdout.strip().splitlines()[-1])
        done = subprocess.run(
            [str(BIN / "python"), "-m", "nbmlops.tools.bench", "monitor", str(env_file),
             str(batch), str(out), "--max-rows", str(max_rows)],
            capture_output=True, text=True, env=build_env("env.ci.yaml"),
        )  # fmt: skip
        batch.unlink()
        shutil.rmtree(out, ignore_errors=True)
        if done.returncode != 0:
            raise RuntimeError(f"monitoring {n} rows failed:\n{done.stderr[-4000:]}")
        found.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(
            f"monitor {n:>9,} rows: {found[-1]['seconds']} s, {found[-1]['peak_mb']} MB", flush=True
        )
    base = found[0]
    for row in found:
        row["seconds_vs_100k"] = round(row["seconds"] / base["seconds"], 2)
        row["peak_vs_100k"] = round(row["peak_mb"] / base["peak_mb"], 2)
        row["report_vs_100k"] = round(row["report_kb"] / base["report_kb"], 3)
    return found


TARGETS = {
    "cold build / papermill loop": ("cold_vs_papermill", 1.1, "max"),
    "cold build, papermill executor / papermill loop": ("kernels_vs_papermill", 1.1, "max"),
    "overhead per task over one script (s)": ("overhead_per_task_vs_script", 1.5, "max"),
    "no-op rebuild / cold build": ("noop_vs_cold", 0.10, "max"),
    "no-op rebuild / cold build, papermill executor": ("noop_vs_cold_kernels", 0.10, "max"),
}


def init_once(project: Path, source: Path, mode: str, rows: int = INIT_ROWS) -> dict:
    """`nbmlops init` on `source` in `project`, or the baseline: `pandas.read_csv` of it; or
    (`write`) the file itself, made in a process of its own so that no measured process
    inherits the memory it took (Linux keeps a peak across fork and exec)."""
    import pandas as pd

    from ..commands import init
    from . import scaleup

    start = time.perf_counter()
    if mode == "write":
        source.parent.mkdir(parents=True, exist_ok=True)
        scaleup.user_table(rows).to_csv(source, index=False)
    elif mode == "read":
        pd.read_csv(source)
    else:
        init.init_project(project, "bench", str(source), "churned", positive="yes",
                          time="signup_date", force=True)  # fmt: skip
    return {"seconds": round(time.perf_counter() - start, 2),
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}  # fmt: skip


def bench_init(project: Path, scratch: Path, repeats: int, rows: int = INIT_ROWS) -> dict:
    """`init` on a `rows`-row CSV against reading the file, each in a fresh process."""
    copy = copy_pipeline(project, scratch / "init")
    source = copy / "data" / "customers.csv"

    def once(mode: str) -> dict:
        done = subprocess.run(
            [str(BIN / "python"), "-m", "nbmlops.tools.bench", "init", mode, str(copy),
             str(source), "--rows", str(rows)], capture_output=True, text=True, env=build_env(),
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"init bench ({mode}) failed:\n{done.stderr[-4000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    once("write")
    runs: dict[str, list[dict]] = {"read": [], "init": []}
    for i in range(repeats):
        for mode in runs:
            runs[mode].append(once(mode))
            print(f"[{i + 1}/{repeats}] {mode} {rows:,} rows: {runs[mode][-1]['seconds']} s, "
                  f"{runs[mode][-1]['peak_mb']} MB", flush=True)  # fmt: skip
    med = {mode: {k: _median([r[k] for r in found]) for k in ("seconds", "peak_mb")}
           for mode, found in runs.items()}  # fmt: skip
    return {"rows": rows, "columns": 12, "file_mb": source.stat().st_size // 2**20, **med,
            "init_vs_read": round(med["init"]["seconds"] / med["read"]["seconds"], 2)}  # fmt: skip


def markdown(result: dict) -> str:
    """The benchmark as Markdown tables, each figure with its target and verdict."""
    lines = ["# Benchmark", "", f"Machine: {result['machine']}", ""]
    for build in result["builds"]:
        s = build["seconds"]
        lines += [f"## Builds, {build['env']} (median of {build['repeats']})", "",
                  "| measure | seconds |", "|---|---|"]  # fmt: skip
        lines += [f"| {k} | {v} |" for k, v in s.items()]
        lines += ["", "| ratio | value | target | met |", "|---|---|---|---|"]
        for label, (key, limit, _) in TARGETS.items():
            lines.append(f"| {label} | {build[key]} | ≤ {limit} | "
                         f"{'yes' if build[key] <= limit else 'no'} |")  # fmt: skip
        lines += [f"| edit one notebook / cold build | {build['edit_vs_cold']} | | |", ""]
    if result.get("setup"):
        seconds = result["setup"]["fresh_clone_to_ready_seconds"]
        lines += ["## Setup", "", f"Fresh clone to a ready environment (`make setup`): {seconds} s",
                  ""]  # fmt: skip
    grid = result.get("grid")
    if grid:
        met = "yes" if grid["speedup"] >= 1.6 else "no"
        lower = ", ".join(grid.get("lower_priority", [])) or "none"
        lines += ["## Candidate grid", "", "| serial s | parallel s | at a lower priority "
                  "| speedup | target | met |", "|---|---|---|---|---|---|",
                  f"| {grid['serial']} | {grid['parallel']} | {lower} | {grid['speedup']} "
                  f"| ≥ 1.6 | {met} |", ""]  # fmt: skip
    if result.get("backtest"):
        lines += ["## Backtest of the retraining policies (once per env)", "",
                  "| env | policies | periods | fits | seconds | × cold build | workers busy "
                  "| budget s | met |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in result["backtest"]:
            met = "" if r["budget"] is None else "yes" if r["seconds"] <= r["budget"] else "no"
            lines.append(f"| {r['env']} | {r['policies']} | {r['periods']} | {r['fits']} | "
                         f"{r['seconds']} | {r['vs_cold_build']} | {r['workers_busy']} | "
                         f"{r['budget'] or ''} | {met} |")  # fmt: skip
        lines.append("")
    if result.get("init"):
        r = result["init"]
        met = "yes" if r["init"]["seconds"] <= 30 and r["init"]["peak_mb"] <= 2048 else "no"
        lines += [f"## `nbmlops init` on {r['rows']:,} rows ({r['columns']} columns, "
                  f"{r['file_mb']} MB of CSV)", "",
                  "| init s | peak MB | read_csv s | peak MB | init / read | ≤ 30 s, ≤ 2 GB |",
                  "|---|---|---|---|---|---|",
                  f"| {r['init']['seconds']} | {r['init']['peak_mb']} | {r['read']['seconds']} "
                  f"| {r['read']['peak_mb']} | {r['init_vs_read']} | {met} |", ""]  # fmt: skip
    if result.get("monitoring"):
        lines += [f"## Scoring and monitoring one batch, as the score and monitor tasks do "
                  f"(compared on ≤ {result['max_rows']:,} rows)", "",
                  "| rows | seconds | of which scoring | × 100k | peak MB | of which scoring "
                  "| peak × 100k | report KB | monitor ≤ 30 s, ≤ 2 GB |",
                  "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in result["monitoring"]:
            monitoring = r["seconds"] - r["scoring_seconds"]
            ok = "yes" if monitoring <= 30 and r["peak_mb"] <= 2048 else "no"
            lines.append(f"| {r['rows']:,} | {r['seconds']} | {r['scoring_seconds']} | "
                         f"{r['seconds_vs_100k']} | {r['peak_mb']} | {r['scoring_peak_mb']} | "
                         f"{r['peak_vs_100k']} | {r['report_kb']} | {ok} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="the whole benchmark")
    run.add_argument("--envs", nargs="+", default=["env.ci.yaml"])
    run.add_argument("--repeats", type=int, default=3)
    run.add_argument("--rows", nargs="+", type=int, default=list(ROWS))
    run.add_argument("--max-rows", type=int, default=100_000)
    run.add_argument("--out", help="default: the env's reports folder, then bench/")
    run.add_argument("--no-setup", dest="setup", action="store_false",
                     help="skip timing a fresh clone's `make setup`")  # fmt: skip
    base = sub.add_parser("baseline", help="(internal) one baseline run in the current folder")
    base.add_argument("mode", choices=["papermill", "script"])
    base.add_argument("--env", default="env.ci.yaml")
    run.add_argument("--init-rows", type=int, default=INIT_ROWS, help="0 skips timing init")
    once = sub.add_parser("init", help="(internal) init, or read the file, in a project")
    once.add_argument("mode", choices=["init", "read", "write"])
    once.add_argument("project", type=Path)
    once.add_argument("source", type=Path)
    once.add_argument("--rows", type=int, default=INIT_ROWS)
    make = sub.add_parser("batch", help="(internal) write a scaled-up batch file; prints its path")
    make.add_argument("env_file", type=Path, help="env file of a built project")
    make.add_argument("rows", type=int)
    make.add_argument("folder", type=Path)
    mon = sub.add_parser("monitor", help="(internal) monitor one scaled-up batch")
    mon.add_argument("env_file", type=Path, help="env file of a built project")
    mon.add_argument("batch", type=Path, help="the batch, a Parquet file")
    mon.add_argument("out", type=Path)
    mon.add_argument("--max-rows", type=int, default=100_000)
    args = parser.parse_args(argv)

    if args.command == "baseline":
        run_baseline(Path.cwd(), args.env, args.mode)
        return 0
    if args.command == "init":
        print(json.dumps(init_once(args.project, args.source, args.mode, args.rows)))
        return 0
    if args.command == "batch":
        print(batch_file(args.env_file, args.rows, args.folder))
        return 0
    if args.command == "monitor":
        print(json.dumps(monitor_once(args.env_file, args.batch, args.out, args.max_rows)))
        return 0
    project = Path.cwd()
    out = Path(args.out or Layout.from_env(project / args.envs[0]).reports / BENCH_PAGES)
    scratch = Path(tempfile.mkdtemp(prefix="nbmlops-bench-"))
    result = {"machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
              "max_rows": args.max_rows, "builds": []}  # fmt: skip
    try:
        result["backtest"] = []
        for env_file in args.envs:
            build = bench_builds(project, env_file, args.repeats, scratch)
            result["builds"].append(build)
            cold = build["seconds"]["cold"]
            result["backtest"].append(bench_backtest(scratch / "cold-0", env_file, cold))
        if args.setup:
            result["setup"] = bench_setup(project, scratch)
        if args.init_rows:
            result["init"] = bench_init(project, scratch, args.repeats, args.init_rows)
        built = scratch / "cold-0"
        result["grid"] = bench_grid(built, args.envs[0], args.repeats)
        result["monitoring"] = bench_monitoring(built / args.envs[0], scratch, args.max_rows,
                                                args.rows)  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(publish(out, "bench", "Benchmark", result, markdown(result)))
    return 0


def publish(out: Path, stem: str, title: str, result: dict, text: str,
            figures: list[str] = ()) -> str:  # fmt: skip
    """`stem.json`, `stem.md` and an `index.html` the reports index links (the text's tables,
    then `figures`); returns the text."""
    storage.write_json(out / f"{stem}.json", result)
    storage.write_text(out / f"{stem}.md", text)
    body = html.markdown_tables(text) + "".join(figures)
    storage.write_text(out / "index.html", html.page(title, body, home="../index.html"))
    return text


if __name__ == "__main__":
    sys.exit(main())
