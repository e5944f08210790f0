"""Ploomber behind one wall: every use of Ploomber (0.23.3) beyond its documented API, and every
workaround of its behaviour, is here, each with the upstream behaviour it answers.

Ploomber has had no release since 2024-09; a new release is checked against this module alone.
The findings worth proposing upstream are written up in docs/ploomber-upstream.md (numbered
there as below). Importing this module does not import Ploomber: each function imports what it
uses, so `make build` can read Ploomber's messages and decide a no-op build without it.
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

# -- Ploomber's messages, which `make build` reads from its output (no API gives them) --------

#: How Ploomber reports an error of the DAG's on_render hook (the env file's check).
RENDER_ERROR = re.compile(r'^Exception when running on_render for DAG "[^"]*": (.*)$')
#: How Ploomber re-raises a task hook's error: the same class, the message replaced by this.
RERAISED = "Exception when running on_render for task"
#: How Ploomber names the task that failed.
FAILED_TASK = re.compile(r"Error when executing task '([^']+)'|Error building task \"([^\"]+)\"")
#: How Ploomber names a `{{key}}` of pipeline.yaml that the env file does not set.
MISSING_PLACEHOLDER = re.compile(r"\{\{([\w.]+)\}\}: Ensure the placeholder is defined in the env")
#: How Ploomber says a content-tracked file (a task's `resources_`) is missing.
MISSING_RESOURCE = re.compile(r"Error reading params\.resources_ with key '(\w+)'\. Expected "
                              r"value '([^']*)' to be an existing file")  # fmt: skip
#: Where a traceback or Ploomber's failure report starts.
REPORT_STARTS = ("Traceback (most recent call last)", "-" * 40, "=" * 20,
                 "Error when executing task", "Error building task", "ploomber.exceptions",
                 "Exception encountered")  # fmt: skip


# -- the env file, read as Ploomber reads it -------------------------------------------------


def read_env(path: Path) -> dict:
    """The env file with `{{here}}` and Ploomber's other placeholders expanded, as plain dicts.
    `EnvDict` keeps them in its private `_data`; its public view wraps each value."""
    from ploomber.env.envdict import EnvDict

    return copy.deepcopy(EnvDict(str(path.resolve()))._data)


# -- a rendered task ---------------------------------------------------------------------------


def task_params(task) -> dict:
    """A task's parameters as plain values (its products as paths)."""
    return task.params.to_json_serializable(params_only=True)


def task_code(task) -> tuple[Path | None, str | None]:
    """A notebook task's file, or a function task's module name."""
    primitive = getattr(task.source, "primitive", None)
    if callable(primitive):
        return None, primitive.__module__
    return Path(str(task.source.loc)), None


def mark_stale(task) -> None:
    """Delete a task's stored metadata: Ploomber then finds it, and what follows it, outdated.
    (Ploomber tracks a task's source and parameters, not the files they name.)"""
    task.product.metadata.delete()


def render_again(dag, forced: bool) -> None:
    """Decide afresh what is stale: Ploomber caches each product's status when it renders
    (`DAG._clear_metadata` drops that cache; no public call does)."""
    dag._clear_metadata()
    dag.render(force=forced, show_progress=False)


def why_outdated(task) -> str:
    """Ploomber's own reason a task runs, in a few words (its private checks; a failure to
    read them costs only the words)."""
    try:
        if not task.product.exists():
            return "no product yet"
        if task.product._outdated_code_dependency():
            return "its source or parameters changed"
        if task.product._outdated_data_dependencies():
            return "an upstream product is newer"
    except Exception:  # noqa: BLE001
        return "outdated"
    return "forced"


def build_forced() -> bool:
    """Whether `ploomber build --force` started this build. `DAG.build` does not pass `force`
    on to the executor (Ploomber's own comment: "FIXME: not passing force flag"), so the
    executor reads the command line Ploomber's CLI parsed. A DAG built from Python with
    `force=True` is taken as not forced: after waiting for another build's lock it decides
    again what is stale, as a build without force would."""
    import argparse

    if Path(sys.argv[0]).name != "ploomber" or "build" not in sys.argv[1:2]:
        return False
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--force", "-f", action="store_true")
    known, _ = parser.parse_known_args(sys.argv[2:])
    return known.force


# -- the parallel executor's parts (finding 3, finding 4) --------------------------------------


def start_statuses(executor, dag) -> None:
    """The statuses a build may start from, as every executor sets them (`Executor.__call__`)."""
    from ploomber.executors.abc import Executor

    Executor.__call__(executor, dag)


def task_job(task):
    """What a worker process runs for a task, and how Ploomber's Parallel submits it."""
    from ploomber.executors.parallel import TaskBuildWrapper

    return TaskBuildWrapper(task)


def failed(outcome) -> bool:
    """Whether a task's job returned Ploomber's record of a failure."""
    from ploomber.messagecollector import Message

    return isinstance(outcome, Message)


def keep_metadata(task, outcome) -> None:
    """Store the metadata a worker's build of the task returned."""
    task.product.metadata.update_locally(outcome[1])


def build_error(failures: list):
    """The error a build raises for its failed tasks, with Ploomber's report of each."""
    from ploomber.exceptions import DAGBuildError
    from ploomber.messagecollector import BuildExceptionsCollector

    return DAGBuildError(str(BuildExceptionsCollector(failures)))


def wrap_build(task, wrapper) -> None:
    """Run `wrapper` where Ploomber's worker builds `task`: no hook runs in the worker before a
    task (finding 3), but `TaskBuildWrapper` calls the task's private `_build`."""
    task._build = wrapper


def unwrap_build(task) -> None:
    task.__dict__.pop("_build", None)


def build_task(task, **kwargs):
    """The task's own build, as Ploomber defines it (under a `wrap_build` wrapper)."""
    return type(task)._build(task, **kwargs)


# -- grid tasks' products named by the grid's values (finding 6) ------------------------------


def name_products_by_value() -> None:
    """From now on in this process, grid products with placeholders carry no index.

    Ploomber appends a task's index in its grid to every product of a grid task:
    `models/[[candidate.name]].pkl` becomes `models/rf-2.pkl`, and removing the candidate
    before it renames the file (`rf-1.pkl`), so the build trains it again and leaves the old
    file behind. Where a product's path uses the grid's `[[...]]` placeholders the name is
    already unique, so it is rendered from them alone; a product without placeholders keeps
    Ploomber's index, and Ploomber's duplicate check still refuses two tasks sharing one.
    Installed by the executor's factory, which Ploomber calls before it makes the tasks.
    """
    from ploomber.tasks import taskgroup

    original = taskgroup._init_product_with_str
    if getattr(original, "by_value", False):
        return

    def by_value(product_class, product_primitive, index, resolve_relative_to, params):
        if index is None or "[[" not in str(product_primitive):
            return original(product_class, product_primitive, index, resolve_relative_to, params)
        from jinja2 import StrictUndefined, Template

        path = Path(product_primitive)
        if resolve_relative_to is not None:
            path = Path(resolve_relative_to, product_primitive).resolve()
        template = Template(str(path), variable_start_string="[[", variable_end_string="]]",
                            undefined=StrictUndefined)  # fmt: skip
        return product_class(template.render(**params))

    by_value.by_value = True
    taskgroup._init_product_with_str = by_value
