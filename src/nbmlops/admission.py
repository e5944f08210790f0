"""Every check on incoming data, run by the ingest task before it writes anything.

A build with bad data therefore stops at its first task: the raw store, the earlier products,
the reports, the registry and the baseline are exactly as the last good build left them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import contract as dc
from . import features
from .settings import DataSettings


def admit(
    manifest: dict,
    tables: dict[str, pd.DataFrame],
    contract_file: str | Path | None,
    data: dict,
    current_batches: str | None,
    root: str | Path,
    within_root: bool,
) -> pd.DataFrame:
    """Contract, target, dataset and split checks, then the current batch files; raises on error.

    Returns the rows and positive rate of every window the split would make.
    """
    settings = DataSettings.from_params(**data)
    result = dc.validate_snapshot(
        manifest, tables, dc.load_contract(contract_file), settings.target, settings.positive_label
    )
    result.raise_if_failed()
    dataset, spec = features.build_dataset(tables, manifest, settings)
    split = features.time_split(dataset, spec, settings, manifest["source"])
    files = features.current_files(current_batches, root, within_root)
    split.batches = features.with_current_batches(split.batches, files, spec, settings)
    return split.summary(spec.target)
