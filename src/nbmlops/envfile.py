"""Read an env file the way Ploomber does ({{here}} and friends expanded), for the commands."""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from .errors import ConfigError
from .settings import (
    BLOCKS,
    CalibrationSettings,
    FeatureSettings,
    RetrainPolicy,
    ServingSettings,
    backtest_policies,
    check_selection_metric,
)


def load_env(env_file: str | Path) -> dict:
    """The env file's values, placeholders expanded as Ploomber expands them."""
    from .ploombercompat import read_env

    path = Path(env_file)
    if not path.is_file():
        raise ConfigError(f"{env_file}: env file not found")
    return read_env(path)


#: Keys an older env file may hold, and where their values went.
MOVED = {"hyperparams": " (candidates are declared in `candidates` now, each with its estimator "
                        "and params: docs/customizing.md)"}  # fmt: skip
#: Keys an older env file lacks, and what to write there.
NEW_KEYS = {
    "candidates": ": declare the candidate models there, each with its `estimator` (a dotted "
                  "path) and `params` (this replaces `hyperparams`; docs/customizing.md)",
    "calibration": ": e.g. `calibration: {method: sigmoid, share: 0.2, threshold: best_f1}` "
                   "(docs/customizing.md)",
    "features": ": name the file of your derived features, e.g. `features: {file: "
                "\"{{here}}/features/NAME.py\", function: derive}` (a `derive(rows)` that "
                "returns `rows` derives none; docs/customizing.md)",
    "selection_metric": ": the metric that picks the best candidate, e.g. `selection_metric: "
                        "roc_auc` (it was `primary_metric` in the gate file)",
}  # fmt: skip
#: Keys Ploomber fills in itself; an env file may use them without pipeline.yaml naming them.
PLOOMBER_KEYS = {"here", "cwd", "root", "user", "now", "git", "git_hash", "build"}


def placeholders(pipeline_text: str) -> set[str]:
    """The `{{name}}` keys a pipeline file uses."""
    return set(re.findall(r"\{\{\s*(\w+)", pipeline_text))


def unknown_keys(env: dict, pipeline_text: str, env_name: str) -> list[str]:
    """Keys of an env file that pipeline.yaml never uses: typos that would be silently ignored."""
    used = placeholders(pipeline_text) | PLOOMBER_KEYS
    problems = [f"{env_name}: unknown key {key!r}" + MOVED.get(key, "") for key in env
                if key not in used]  # fmt: skip
    for block, settings in BLOCKS.items():
        known = settings.keys()
        value = env.get(block) or {}
        stray = sorted(set(value) - known) if isinstance(value, dict) else []
        problems += [f"{env_name}: unknown key '{block}.{key}' (known: {sorted(known)})"
                     for key in stray]  # fmt: skip
    return problems


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice in one mapping (YAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"{self.name}: line {key_node.start_mark.line + 1}: key {key!r} "
                                  f"is written twice in one mapping (first on line {seen[key]}); "
                                  "YAML would keep the last and drop the first")  # fmt: skip
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def read_unique(path: Path) -> dict:
    """An env file's YAML as written (placeholders kept), a key twice in a mapping refused."""
    loader = _UniqueKeyLoader(path.read_text(encoding="utf-8"))
    loader.name = path.name
    try:
        return loader.get_single_data() or {}
    finally:
        loader.dispose()


def check_env_keys(
    dag=None,
    here: str | None = None,
    serving: dict | None = None,
    backtest: dict | None = None,
    retraining: dict | None = None,
    calibration: dict | None = None,
    selection_metric: str | None = None,
    features: dict | None = None,
) -> None:
    """Ploomber `on_render` hook: refuse an env file with a key the pipeline does not use.

    Ploomber itself rejects unknown keys on the command line but ignores them in the file.
    A key written twice in one mapping (two candidates of one name) is refused too: YAML
    would keep the last silently. The blocks no task reads (`serving` for the scoring service,
    `backtest` for `make backtest`, `retraining` for the scheduled job) are checked here too,
    so a wrong value shows at the next build.
    """
    folder = Path(here) if here else Path.cwd()
    env_path = folder / os.environ.get("PLOOMBER_ENV_FILENAME", "env.yaml")
    if not env_path.is_file():
        return
    raw = read_unique(env_path)
    pipeline_text = (folder / "pipeline.yaml").read_text(encoding="utf-8")
    problems = unknown_keys(raw, pipeline_text, env_path.name)
    if problems:
        used = ", ".join(sorted(placeholders(pipeline_text)))
        raise ConfigError("; ".join(problems) + f" (pipeline.yaml uses: {used})")
    ServingSettings.from_params(serving, env_path.name)
    if backtest is not None:
        backtest_policies(backtest, env_path.name)
    if retraining is not None:
        RetrainPolicy.from_params(retraining, f"{env_path.name}: retraining")
    if calibration is not None:
        CalibrationSettings.from_params(calibration, env_path.name)
    if features is not None:
        FeatureSettings.from_params(features, env_path.name)
    if selection_metric is not None:
        check_selection_metric(selection_metric, env_path.name)
