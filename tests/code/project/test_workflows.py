"""The GitHub Actions side, checked offline: lint, schema, hardening, and Makefile targets."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent


def _load(path):
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads `on:` as True
    return data


def _targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-zA-Z][\w-]*):", text, re.M))


def test_there_are_ci_publish_and_monitor_workflows():
    assert {p.stem for p in WORKFLOWS} == {"ci", "publish", "monitor"}


def test_actionlint_passes():
    done = subprocess.run(
        [str(BIN / "actionlint"), *map(str, WORKFLOWS)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_github_workflow_schema_passes():
    done = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_hardening(path):
    data = _load(path)
    assert data["permissions"] == {"contents": "read"}
    assert "pull_request_target" not in data["on"]
    assert "concurrency" in data
    for name, job in data["jobs"].items():
        assert set((job.get("permissions") or {}).values()) <= {"read", "write", "none"}
        for step in job.get("steps", []):
            run = step.get("run", "")
            assert "github.event" not in run and "${{" not in run, (
                f"{path.name}:{name} interpolates into run"
            )


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_make_target_a_workflow_calls_exists(path):
    runs = [s.get("run", "") for job in _load(path)["jobs"].values() for s in job.get("steps", [])]
    called = {m for run in runs for m in re.findall(r"\bmake ([a-z][\w-]*)", run)}
    assert called, f"{path.name} runs no make target"
    assert called <= _targets(), called - _targets()
    for target in called:
        dry = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
        assert dry.returncode == 0, dry.stderr


def test_write_scopes_only_where_needed():
    ci, publish = (
        _load(ROOT / ".github/workflows/ci.yml"),
        _load(ROOT / ".github/workflows/publish.yml"),
    )
    assert ci["jobs"]["comment"]["permissions"] == {"pull-requests": "write"}
    assert "permissions" not in ci["jobs"]["check"]
    assert publish["jobs"]["deploy"]["permissions"] == {"pages": "write", "id-token": "write"}
    assert "permissions" not in publish["jobs"]["build"]
    steps = [
        s.get("uses", "")
        for s in publish["jobs"]["build"]["steps"] + publish["jobs"]["deploy"]["steps"]
    ]
    assert any(u.startswith("actions/upload-pages-artifact@") for u in steps)
    assert any(u.startswith("actions/deploy-pages@") for u in steps)


def test_ci_builds_the_sample_in_fresh_kernels_and_the_full_year_stays_on_the_engine():
    runs = [
        s.get("run", "") for s in _load(ROOT / ".github/workflows/ci.yml")["jobs"]["check"]["steps"]
    ]
    commands = {"make " + run.split(" make ", 1)[1] for run in runs if " make " in run}
    assert {"make build ENV=ci", "make nbval ENV=ci"} <= commands
    assert _load(ROOT / "env.ci.yaml")["notebook_executor"] == "papermill"
    assert _load(ROOT / "env.yaml")["notebook_executor"] == "ploomber-engine"


def test_make_ci_runs_the_workflow_sequence():
    """The same steps, in the same order, recorded by .ci/step under the same names; each
    runs whatever failed before it, and the comment reads the steps."""
    text = (ROOT / "Makefile").read_text()
    recipe = text.split("\nci:", 1)[1].split("\n\n", 1)[0]
    steps = _load(ROOT / ".github/workflows/ci.yml")["jobs"]["check"]["steps"]
    recorded = [s for s in steps if s.get("run", "").startswith("bash .ci/step ")]
    assert [s["run"].split()[2] for s in recorded] == [
        "lint", "test-fast", "build", "nbval", "gates", "test-pipeline"
    ]  # fmt: skip
    made = [line.strip().removeprefix("-") for line in recipe.splitlines()[1:]]
    assert [s["run"].replace(" make ", " $(MAKE) ") for s in recorded] == [
        line
        for line in made
        if line.startswith("bash .ci/step ") and line != "bash .ci/step --clear"
    ]
    for step in steps[steps.index(recorded[0]) :]:
        assert step.get("if", "").startswith("${{ !cancelled()"), step  # runs after a failure
    comment = next(s for s in steps if s.get("run", "").startswith("make comment"))
    assert "BASE" in comment["env"] and "$(MAKE) comment ENV=ci" in recipe


def test_the_scheduled_job_retrains_and_proposes_through_a_reviewed_pull_request():
    data = _load(ROOT / ".github/workflows/monitor.yml")
    monitor, propose = data["jobs"]["monitor"], data["jobs"]["propose"]
    runs = [s.get("run", "") for s in monitor["steps"]]
    order = [next(i for i, r in enumerate(runs) if r.startswith(f"make {t}"))
             for t in ("follow", "monitor-latest", "retrain", "propose")]  # fmt: skip
    assert order == sorted(order)
    assert "permissions" not in monitor  # the job that builds cannot write to the repository
    assert propose["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert propose["needs"] == "monitor" and "proposed == 'true'" in propose["if"]
    opened = next(s for s in propose["steps"] if "create-pull-request" in s.get("uses", ""))
    assert opened["with"]["add-paths"] == "model/baseline*.json"  # the change is the file alone
    failing = monitor["steps"][-1]
    assert failing["if"] == "steps.monitor.outcome == 'failure'" and failing["run"] == "exit 1"
