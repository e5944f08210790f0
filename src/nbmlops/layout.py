"""Where a build's products are: the paths pipeline.yaml names, rendered with an env file.

Commands outside the pipeline (the scoring service, the CI report, the tools) ask here for a
product by task and key, so no path that pipeline.yaml names is written a second time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .envfile import load_env
from .errors import ConfigError

PIPELINE = "pipeline.yaml"
#: Folders under the env's `reports` that `make bench`, `make load` and `make soak` write, and
#: the index links.
BENCH_PAGES, LOAD_PAGES, SOAK_PAGES = "bench", "load", "soak"
#: Folders under the env's `reports` that `make backtest` and `make live` write, and the
#: index links.
BACKTEST_PAGES, LIVE_PAGES = "backtest", "live"
#: The training tasks (one per candidate) and the placeholder their products are named by.
TRAIN_TASK, CANDIDATE_PLACEHOLDER = "train-[[candidate.name]]", "[[candidate.name]]"
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@dataclass(frozen=True)
class Layout:
    """An env file's values and the products of every task, by task name and product key."""

    env_file: Path
    env: dict
    products: dict[str, dict[str, str]]
    executor: dict[str, str] = field(default_factory=dict)  # its settings that are text

    @classmethod
    def from_env(cls, env_file: str | Path) -> Layout:
        """Read the env file and its pipeline (`find_pipeline`); relative paths start there."""
        env_file = Path(env_file)
        env = load_env(env_file)
        pipeline = find_pipeline(env_file)
        spec = yaml.safe_load(pipeline.read_text(encoding="utf-8"))
        products = {
            _task_name(task): {key: str(pipeline.parent / _render(str(path), env, pipeline))
                               for key, path in task["product"].items()}
            for task in spec.get("tasks") or []
        }  # fmt: skip
        executor = spec.get("executor") if isinstance(spec.get("executor"), dict) else {}
        settings = {key: _render(value, env, pipeline) for key, value in executor.items()
                    if isinstance(value, str) and key != "dotted_path"}  # fmt: skip
        return cls(env_file, env, products, settings)

    def product(self, task: str, key: str) -> Path:
        """The path of one product, e.g. `product("features", "spec")`."""
        try:
            return Path(self.products[task][key])
        except KeyError:
            raise ConfigError(f"{PIPELINE} names no product {key!r} of a task {task!r}") from None

    def executor_file(self, key: str) -> Path:
        """A file the build's executor keeps, as pipeline.yaml names it: `lock_file`, `inputs`."""
        try:
            return self.pipeline.parent / self.executor[key]  # relative to it, as the products
        except KeyError:
            raise ConfigError(f"{PIPELINE}: its executor names no {key!r}") from None

    @property
    def pipeline(self) -> Path:
        return find_pipeline(self.env_file)

    @property
    def candidates(self) -> list[dict]:
        """The env file's candidates, one declaration each (`settings.candidate_grid`)."""
        from .settings import candidate_grid

        return candidate_grid(self.env.get("candidates"), self.env_file.name)

    def candidate_product(self, name: str, key: str) -> Path:
        """One product of a candidate's training task, e.g. `("rf", "model")`: models/rf.pkl."""
        path = self.product(TRAIN_TASK, key)
        return path.with_name(path.name.replace(CANDIDATE_PLACEHOLDER, name))

    @property
    def reports(self) -> Path:
        return self.env_file.resolve().parent / str(self.env["reports"])


def stopped_record(metrics_file: str | Path) -> Path:
    """Where evaluation keeps the comparison of a build the promotion gates stopped, beside
    its metrics file (never a product: a stopped build leaves the products as they were)."""
    path = Path(metrics_file)
    return path.with_name(f"{path.stem}.stopped{path.suffix}")


def find_pipeline(env_file: Path) -> Path:
    """The pipeline.yaml beside the env file, else the one Ploomber would use from the
    current folder (it looks there, then in each parent)."""
    beside = env_file.resolve().parent / PIPELINE
    if beside.is_file():
        return beside
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if (folder / PIPELINE).is_file():
            return folder / PIPELINE
    raise ConfigError(f"{env_file}: no {PIPELINE} beside it or in {Path.cwd()} and its parents")


def _task_name(task: dict) -> str:
    return task.get("name") or Path(task["source"]).stem.split(".")[-1]


def _render(text: str, env: dict, pipeline: Path) -> str:
    def value(match: re.Match) -> str:
        if match[1] not in env:
            raise ConfigError(f"{pipeline}: a product uses {{{{{match[1]}}}}}, which the env "
                              "file does not set")  # fmt: skip
        return str(env[match[1]])

    return _PLACEHOLDER.sub(value, text)
