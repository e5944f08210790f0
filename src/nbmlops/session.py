"""Who runs a notebook: the build, which writes its products and registers its model, or a
person in JupyterLab, whose run writes to a scratch folder and registers nothing.

The build marks its processes (`mark_build`: the executor, an engine's task runner, the
notebook check); a kernel JupyterLab starts is not marked. A notebook passes its `product` through
`outputs` (and a folder it keeps files in through `folder`), and the evaluate notebook its
MLflow store through `registry`, so running
the notebooks top to bottom in Lab never changes the build's products, its reports or the
registry. Set NBMLOPS_WRITE_PRODUCTS=1 in Lab to write where the build writes (and register).

Every build has an id (`build_id`), set once by `make build` and inherited by each task: the
records a build writes carry it, and `make build` leaves a record of the build itself
(`record_build`: its id, whether it passed, the task and message that stopped it), so a
report read later can tell a figure of this build from one an earlier build left.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

#: Set in every process of a build: its notebooks write their products.
BUILD = "NBMLOPS_BUILD"
#: The build's id, set once for the build and inherited by every process of it.
BUILD_ID = "NBMLOPS_BUILD_ID"
#: The record `make build` leaves in the env's reports folder.
BUILD_RECORD = "build.json"
#: Set by a person who wants a notebook run in JupyterLab to write (and register) as a build.
WRITE = "NBMLOPS_WRITE_PRODUCTS"


def mark_build() -> None:
    """This process and those it starts run the build's notebooks."""
    os.environ[BUILD] = "1"
    if not os.environ.get(BUILD_ID):  # `make build` sets it before the build starts
        os.environ[BUILD_ID] = new_build_id()


def new_build_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S")


def build_id() -> str:
    """The id of the build this process belongs to; outside a build, a new one."""
    return os.environ.get(BUILD_ID) or new_build_id()


def record_build(reports: str | Path, record: dict) -> Path:
    """Write the build's record (`make build` does, when it starts and when it ends)."""
    from .storage import write_json

    return write_json(Path(reports) / BUILD_RECORD, record)


def read_build(reports: str | Path) -> dict | None:
    """The record of the last build `make build` started, or None."""
    from .storage import read_json

    path = Path(reports) / BUILD_RECORD
    return read_json(path) if path.is_file() else None


def in_build() -> bool:
    """Whether this notebook runs as part of a build (or the person asked to write)."""
    return os.environ.get(BUILD) == "1" or os.environ.get(WRITE) == "1"


def outputs(product, task: str):
    """The paths a notebook writes: `product` in a build; otherwise the same names in a new
    scratch folder, printed, so an interactive run changes none of the build's files."""
    if in_build() or product is None:
        return product
    scratch = Path(tempfile.mkdtemp(prefix=f"nbmlops-{task}-"))
    print(f"Run outside a build: {task} writes to {scratch}, not to the build's products and "
          f"reports (set {WRITE}=1 to write there).")  # fmt: skip
    if isinstance(product, dict):
        return {key: str(scratch / Path(str(path)).name) for key, path in product.items()}
    return str(scratch / Path(str(product)).name)


def _scratch(product) -> Path:
    some = next(iter(product.values())) if isinstance(product, dict) else product
    return Path(str(some)).parent


def folder(path, product):
    """A folder a notebook keeps files in beside its products (the raw snapshots, the scored
    rows' archive): `path` in a build; otherwise one of the same name in the scratch folder of
    `product` (as `outputs` gave it)."""
    if in_build() or product is None:
        return path
    return str(_scratch(product) / Path(str(path)).name)


def registry(store, product):
    """The MLflow store a notebook registers in: `store` in a build; otherwise the same model
    name in an embedded store beside the scratch products, so nothing reaches the project's
    registry (a shared server named by MLFLOW_TRACKING_URI included)."""
    if in_build():
        return store
    from dataclasses import replace

    runs = _scratch(product) / "mlruns"
    return replace(store, tracking_uri=f"sqlite:///{runs}/mlflow.db",
                   artifact_root=str(runs / "artifacts"))  # fmt: skip


#: How a build's lines for the person start: `make build` shows them and keeps the rest of
#: Ploomber's, papermill's and the kernels' output in its log.
SAY = "» "


def say(text: str) -> None:
    """A line of the build for the person who runs it (each line of `text`, marked SAY)."""
    print("\n".join(SAY + line for line in text.splitlines()), flush=True)
