"""`make build`: `ploomber build`, quiet, with a failure shown as the one message that matters.

Ploomber, papermill and the kernels print progress bars, warnings and tracebacks by the
hundred lines. Here the whole output goes to a log file, and the terminal shows one line per
task as it ends (ran, failed or skipped, why, seconds: the lines the build marks with
`session.SAY`), the warnings counted by kind with where to read them, and one closing line.
When the build fails on one of the errors the package raises on purpose (bad data, a wrong
setting, a broken gate, a locked build), that error's message comes last, with the task it
stopped and where the full log is, and no traceback. Any other failure shows Ploomber's
output from its traceback on.

Every build gets an id, which its tasks inherit and stamp on the records they write, and
leaves its record in the env's reports folder (`session.record_build`): running when it
starts; passed or failed, with the task, kind and message that stopped it, when it ends.

    python -m nbmlops.build.run --env env.ci.yaml [ploomber build options]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import yaml

from .. import session
from ..envfile import NEW_KEYS
from ..errors import PipelineError
from ..layout import Layout, stopped_record
from ..locking import WAITING
from ..ploombercompat import (
    FAILED_TASK,
    MISSING_PLACEHOLDER,
    MISSING_RESOURCE,
    RENDER_ERROR,
    REPORT_STARTS,
    RERAISED,
)
from . import unchanged

#: A warning in the output: Python's (`RuntimeWarning: divide by zero`, from any module) and
#: the package's own `warning: ...` lines.
_WARNING = re.compile(r"\b([A-Z]\w*Warning): |^(warning): ")
#: The errors raised on purpose, whose message is written for the person building.
OURS = ("PipelineError", "ConfigError", "DataError", "GateError", "RegistryError",
        "IntegrityError", "BuildLocked")  # fmt: skip
_ERROR = re.compile(
    rf"^(?:nbmlops(?:\.\w+)*\.)?(?:\x1b\[[\d;]*m)*({'|'.join(OURS)})(?:\x1b\[[\d;]*m)*: (.*)$"
)
_ANSI = re.compile(r"\x1b\[[\d;]*m")
#: An error raised by a write that found its filesystem full, with the file when the error
#: names it (a warning line that mentions one, from a task that went on, is not one).
_NO_SPACE = re.compile(
    r"^\s*[\w.]*(?:Error|Exception)\b.*?\[[Ee]rrno 28\].*?"
    r"No space left on device(?:: '([^']*)')?",
    re.MULTILINE,
)
#: A task's line, as the build says it ("[3/10] train-rf: ran in 9.1 s (...)", "ingest: skipped").
_TASK_LINE = re.compile(r"^(?:\[\d+/\d+\] )?([\w-]+): (?:ran|skipped|failed)\b")
#: What each content-tracked file is, by its key in pipeline.yaml.
RESOURCES = {"features": "`features.file`: your derived features",
             "gates": "`gates`: the promotion gates"}  # fmt: skip


class Failure(NamedTuple):
    task: str  # the task that failed ("" when the output names none)
    message: str
    kind: str  # the error's class: GateError, DataError, ...


def clear_message(output: str) -> Failure | None:
    """The task that failed and the message of the package's own error in a build's output,
    or None when the failure is something else. A message runs on to the next blank line
    (a data error's `also:` lines, a gate table)."""
    lines = _ANSI.sub("", output).splitlines()
    found = None
    for i, line in enumerate(lines):
        match = _ERROR.match(line.strip())
        if match and not match[2].startswith(RERAISED):
            found = (i, match[2], match[1])
        elif render := RENDER_ERROR.match(line.strip()):
            found = (i, render[1], "ConfigError")
    if found is None:
        return None
    i, head, kind = found
    more = []
    for line in lines[i + 1 :]:
        if not line.strip() or any(line.lstrip().startswith(s) for s in REPORT_STARTS):
            break
        more.append(line)
    return Failure(_failed_task(output), "\n".join([head, *more]).rstrip(), kind)


def _failed_task(output: str) -> str:
    """The first task Ploomber's output says failed, or ""."""
    found = FAILED_TASK.search(output)
    return (found[1] or found[2]) if found else ""


def log_path(env_file: str) -> Path:
    """logs/build-<env>.log, beside the env file (never inside a project's products)."""
    env = Path(env_file)
    name = env.name.removesuffix(".yaml").removesuffix(".yml")
    name = name.removeprefix("env.") if name != "env" else "default"
    return env.resolve().parent / "logs" / f"build-{name or 'default'}.log"


def run(env_file: str, args: list[str], ploomber: str) -> int:
    """The build, its record written when it starts and when it ends; when nothing changed
    since the last build that passed (`unchanged`), decided without starting Ploomber."""
    started = time.monotonic()
    kept_file = unchanged.record_path(log_path(env_file))
    kept = unchanged.up_to_date(kept_file, env_file, args)
    if kept is not None:
        return _nothing_to_do(env_file, args, kept, started)
    unchanged.forget(kept_file)
    record = _Record(env_file, args)
    layout = record.layout
    decidable = layout and unchanged.decidable(args) and unchanged.path_free(args, layout.env)
    watched = _watched(layout, env_file) if decidable else None
    before = unchanged.snapshot(watched) if watched else {}
    partial = any(a in ("-p", "--partially") or a.startswith("--partially=") for a in args)
    away = _registry_away(layout) if layout and not partial else None
    if away is not None:  # a whole build would train, then fail at evaluate: fail now
        print(f"\nbuild failed before any task ran:\n{away}", file=sys.stderr)
        record.finish(2, Failure("", away, "RegistryError"))
        return 2
    code, failure, tasks = _build(env_file, args, ploomber, record.build_id)
    record.finish(code, failure)
    if code == 0 and watched and tasks:
        _remember(kept_file, record, args, tasks, (watched, before))
    return code


def _registry_away(layout: Layout) -> str | None:
    """Why the env's shared registry cannot be used, or None (an embedded store, or a server
    that answers a registry query within seconds). Its health check alone answers without
    its database or its credentials: a query is asked too, without MLflow's minutes of
    retries."""
    from ..registry.errors import RegistryError
    from ..registry.store import Store, is_server_uri, probe_server

    try:
        uri = Store.from_params(layout.env.get("mlflow"), str(layout.env_file)).tracking_uri
    except PipelineError:
        return None  # a bad block is the build's own error to report, task by task
    if not is_server_uri(uri) or uri.startswith("databricks"):
        return None
    try:
        probe_server(uri)
    except RegistryError as exc:
        return f"{exc}; nothing was built"
    quick = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    kept = {k: os.environ.get(k) for k in quick}
    os.environ.update({k: os.environ.get(k) or v for k, v in quick.items()})
    try:
        from mlflow import MlflowClient

        MlflowClient(uri).search_registered_models(max_results=1)
    except Exception as exc:  # noqa: BLE001 - whatever it is, the build would meet it later
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        return (f"MLflow tracking server {uri} answers, but not a registry query "
                f"({type(exc).__name__}: {first}); nothing was built")  # fmt: skip
    finally:
        for k, v in kept.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return None


def _watched(layout: Layout | None, env_file: str) -> dict | None:
    """What `unchanged` compares for this env (None when the env file cannot be read)."""
    if layout is None:
        return None
    try:
        inputs = layout.executor_file("inputs")
    except Exception:  # noqa: BLE001 - a pipeline without the record: Ploomber decides each time
        return None
    read = unchanged.read_inputs(inputs)
    tasks = yaml.safe_load(layout.pipeline.read_text(encoding="utf-8")).get("tasks") or []
    notebooks = [str(layout.pipeline.parent / t["source"]) for t in tasks
                 if str(t.get("source", "")).endswith((".py", ".ipynb"))]  # fmt: skip
    pattern = layout.env.get("current_batches")
    patterns = [pattern] if isinstance(pattern, str) else list(pattern or [])
    return {"project": str(layout.pipeline.parent),
            "outputs": [str(Path(layout.env["products"]).resolve()), str(layout.reports)],
            "files": sorted({*unchanged.env_files(layout.env), str(Path(env_file).resolve()),
                             str(layout.pipeline), *read, *notebooks}),
            "globs": [[str(layout.pipeline.parent), p] for p in patterns if p]}  # fmt: skip


def _remember(kept_file: Path, record: _Record, args: list[str], tasks: list[str],
              watched: tuple[dict, dict]) -> None:  # fmt: skip
    """Keep the files as this build left them, for the next `make build` to compare."""
    layout = record.layout
    where = _watched(layout, str(layout.env_file))
    if where is None:
        return
    hashed = unchanged.hashed_at(layout.executor_file("inputs"))
    fields = {"build_id": record.build_id, "args": args, "cwd": os.getcwd(),
              "env_file": str(layout.env_file.resolve()), "pipeline": str(layout.pipeline),
              "tasks": tasks, "reports": str(layout.reports),
              "lock": str(layout.executor_file("lock_file"))}  # fmt: skip
    try:
        unchanged.remember(kept_file, fields, watched, where, hashed)
    except OSError as exc:  # the build passed; the next one decides through Ploomber
        print(f"warning: what the build left was not recorded: {exc}", file=sys.stderr)


def _nothing_to_do(env_file: str, args: list[str], kept: dict, started: float) -> int:
    """A build with nothing to do: a line per task, its record, the closing line."""
    build_id = session.new_build_id()
    for name in kept["tasks"]:
        print(f"{name}: skipped (up to date)", flush=True)
    session.record_build(kept["reports"], {
        "build_id": build_id, "env": Path(env_file).name, "args": args, "partial": False,
        "started": _now(), "log": str(log_path(env_file)), "status": "passed",
        "finished": _now(), "unchanged_since": kept["build_id"]})  # fmt: skip
    print(f"build {build_id} passed in {time.monotonic() - started:.1f} s: nothing changed "
          f"since build {kept['build_id']} (decided without loading the pipeline)",
          flush=True)  # fmt: skip
    return 0


class _Record:
    """The build's record in the env's reports folder (none when the env file cannot be read:
    the build then stops on it, with its own message)."""

    def __init__(self, env_file: str, args: list[str]):
        self.build_id = session.new_build_id()
        try:
            layout = Layout.from_env(env_file)
        except Exception:  # noqa: BLE001 - the build then stops on the env file, saying why
            layout = None
        self.layout = layout
        self.reports = layout.reports if layout else None
        if layout is not None:  # what the gates stopped in an earlier build is not this one's
            stopped_record(layout.product("evaluate", "metrics")).unlink(missing_ok=True)
        self.fields = {"build_id": self.build_id, "env": Path(env_file).name, "args": args,
                       "partial": "--partially" in args, "started": _now(),
                       "log": str(log_path(env_file))}  # fmt: skip
        self._write({"status": "running"})

    def finish(self, code: int, failure: Failure | None) -> None:
        ended = {"status": "passed" if code == 0 else "failed", "finished": _now()}
        if code != 0:
            ended |= failure._asdict() if failure else {"task": "", "kind": "", "message": ""}
        self._write(ended)

    def _write(self, fields: dict) -> None:
        if self.reports is not None:
            try:
                session.record_build(self.reports, self.fields | fields)
            except OSError as exc:
                print(f"warning: the build's record cannot be written: {exc}", file=sys.stderr)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _build(
    env_file: str, args: list[str], ploomber: str, build_id: str
) -> tuple[int, Failure | None, list[str]]:
    """Ploomber's build, its lines shown as it goes: the exit code, the failure, and the tasks
    it named (each task once, in the order said)."""
    log = log_path(env_file)
    log.parent.mkdir(parents=True, exist_ok=True)
    environ = os.environ | {"PLOOMBER_ENV_FILENAME": env_file, session.BUILD_ID: build_id}
    started = time.monotonic()
    warnings: Counter[str] = Counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen([ploomber, "build", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=environ)  # fmt: skip
        assert proc.stdout is not None
        chunks, tasks = [], []
        for line in iter(proc.stdout.readline, b""):
            out.write(line)
            out.flush()
            chunks.append(line)
            for text in _ANSI.sub("", line.decode("utf-8", "replace")).split("\r"):
                said = _said(text)
                if said is not None:
                    print(said, flush=True)
                    if task := _TASK_LINE.match(said):
                        tasks.append(task[1])
                elif found := _WARNING.search(text):
                    warnings[found[1] or found[2]] += 1
        code = proc.wait()
    seconds = time.monotonic() - started
    if warnings:
        kinds = ", ".join(f"{n} {kind}" for kind, n in warnings.most_common())
        print(f"warnings: {sum(warnings.values())} ({kinds}), in {log}", flush=True)
    if code == 0:
        print(f"build {build_id} passed in {seconds:.0f} s; full log: {log}", flush=True)
        return 0, None, list(dict.fromkeys(tasks))
    output = b"".join(chunks).decode("utf-8", "replace")
    found = clear_message(output)
    report = output[len(_before_traceback(chunks)) :]  # the failure, not what tasks survived
    if full := _no_space(report, env_file, _failed_task(output)):  # space is what to see to
        where = f" in task '{full.task}'" if full.task else ""
        print(f"\nbuild failed{where}:\n{full.message}\n\nfull log: {log}", file=sys.stderr)
        return code, full, []
    missing = MISSING_PLACEHOLDER.findall(output)
    if found is None and missing:  # an env file without a key the pipeline needs
        hints = [f"{Path(env_file).name}: no `{key}`{NEW_KEYS.get(key.split('.')[0], '')}"
                 for key in dict.fromkeys(missing)]  # fmt: skip
        print("\nbuild failed:\n" + "\n".join(hints) + f"\n\nfull log: {log}", file=sys.stderr)
        return code, Failure("", "\n".join(hints), "ConfigError"), []
    if found is None and (resource := MISSING_RESOURCE.search(output)):
        what = RESOURCES.get(resource[1], resource[1])
        message = f"{Path(env_file).name}: {resource[2]} not found ({what})"
        print(f"\nbuild failed:\n{message}\n\nfull log: {log}", file=sys.stderr)
        return code, Failure("", message, "ConfigError"), []
    if found is None:  # not one of ours: everything Ploomber said from its traceback on
        said = output[len(_before_traceback(chunks)) :]
        if not said.strip():  # no traceback (a usage error): its last lines
            said = "\n".join(_ANSI.sub("", output).rstrip().splitlines()[-20:]) + "\n"
        sys.stdout.write(said)
        print(f"\nbuild failed; full log: {log}", file=sys.stderr)
        tail = "\n".join(_ANSI.sub("", output).rstrip().splitlines()[-20:])
        return code, Failure(_failed_task(output), tail, ""), []
    where = f" in task '{found.task}'" if found.task else ""
    print(f"\nbuild failed{where}:\n{found.message}\n\nfull log: {log}", file=sys.stderr)
    return code, found, []


def _no_space(output: str, env_file: str, task: str = "") -> Failure | None:
    """The failure of a build that found a disk full: the file it could not write (or, when
    the error names none, the space left where builds write), and what to do; None for any
    other failure."""
    found = _NO_SPACE.search(_ANSI.sub("", output))
    if found is None:
        return None
    if found[1]:
        where = f"writing {found[1]} ({_free(Path(found[1]))} free there now)"
    else:  # the products' folder, or the temporary folder (Ploomber's and joblib's files)
        try:
            products = Path(Layout.from_env(env_file).env["products"])
        except Exception:  # noqa: BLE001 - then the message goes without it
            products = None
        places = [("the products' folder", products)] if products else []
        places.append(("the temporary folder", Path(tempfile.gettempdir())))
        where = "(free now: " + ", ".join(f"{name} {_free(at)}" for name, at in places) + ")"
    message = (f"no space left on device {where}.\n"
               "Free some space and build again: the task that failed and those after it run "
               "again. Data, models and figures are written whole or not at all, so none is "
               "left half-written; the executed notebook of the task that failed keeps what it "
               "ran before the disk filled.")  # fmt: skip
    return Failure(task or _failed_task(output), message, "DiskFull")


def _free(path: Path) -> str:
    """The free space of the filesystem `path` is on (or would be), in MB."""
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return f"{shutil.disk_usage(path).free / 2**20:.1f} MB"
    except OSError:  # not ours to read
        return "unknown"


def _said(text: str) -> str | None:
    """The line for the person, if `text` is one (the build's marked lines, a lock's wait)."""
    text = text.rstrip("\n")
    if session.SAY in text:  # after another worker's progress bar, on the same line
        return text[text.index(session.SAY) + len(session.SAY) :]
    return text if text.startswith(WAITING) else None


def _before_traceback(chunks: list[bytes]) -> str:
    """The output up to the first traceback or failure report."""
    shown = []
    for line in chunks:
        text = _ANSI.sub("", line.decode("utf-8", "replace")).lstrip("\r")
        if any(text.lstrip().startswith(s) for s in REPORT_STARTS):
            break
        shown.append(line.decode("utf-8", "replace"))
    return "".join(shown)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nbmlops.build.run",
                                     description=__doc__.split("\n")[0])  # fmt: skip
    parser.add_argument("--env", default="env.yaml", help="the env file (default: env.yaml)")
    parser.add_argument("--ploomber", default=str(Path(sys.executable).parent / "ploomber"))
    known, rest = parser.parse_known_args(argv)
    return run(known.env, rest, known.ploomber)


if __name__ == "__main__":
    sys.exit(main())
