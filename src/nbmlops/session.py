"""Who runs a notebook: the build, which writes its products and registers its model, or a
person in JupyterLab, whose run writes to a scratch folder and registers nothing.

The build marks its processes (`mark_build`: the executor, an engine's task runner, the
notebook check); a kernel JupyterLab starts is not marked. A notebook passes its `product` through
`outputs` (and a folder it keeps files in through `folder`), and the evaluate notebook its
MLflow store through `registry`, so running
the notebooks top to bottom in Lab never changes the build's products, its reports or the
registry. Set NBMLOPS_WRITE_PRODUCTS=1 in Lab to write where the build writes (and register).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

#: Set in every process of a build: its notebooks write their products.
BUILD = "NBMLOPS_BUILD"
#: Set by a person who wants a notebook run in JupyterLab to write (and register) as a build.
WRITE = "NBMLOPS_WRITE_PRODUCTS"


def mark_build() -> None:
    """This process and those it starts run the build's notebooks."""
    os.environ[BUILD] = "1"


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
