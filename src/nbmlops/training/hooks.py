"""Ploomber hooks of the training tasks; light to import (loading pipeline.yaml imports this,
and a build with nothing to do should not pay for scikit-learn)."""

from __future__ import annotations

import os


def check_candidate(task, params) -> None:
    """`on_render` of each training task: before anything runs, the candidate's estimator
    imports and takes its parameters, or one line names the candidate and the problem. A task
    that is up to date is not checked again: it trained with this very declaration."""
    from ploomber.constants import TaskStatus

    if task.exec_status == TaskStatus.Skipped:
        return
    from ..spec import FeatureSpec
    from .candidates import build

    where = os.environ.get("PLOOMBER_ENV_FILENAME", "env.yaml") + ": candidates"
    build(params["candidate"], FeatureSpec("target", ["x"], ["c"]), 0, where)
