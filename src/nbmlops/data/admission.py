"""Every check on incoming data, run by the ingest task before it writes anything.

A build with bad data therefore stops at its first task: the raw store, the earlier products,
the reports, the registry and the baseline are exactly as the last good build left them.
What passes is written once, by ingest, and read from there by every later task.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import derived
from ..settings import DataSettings
from ..spec import FeatureSpec
from ..storage import read_json, write_json
from . import batches, dataset
from . import contract as dc
from .split import Split, time_split


@dataclass
class AdmissionRecord:
    """What ingest writes beside the admitted data: the contract's findings, the feature spec
    and the rows of every window. Later tasks read it instead of checking again."""

    checks: dc.CheckResult
    spec: FeatureSpec
    windows: pd.DataFrame

    def write(self, path: str | Path) -> Path:
        windows = self.windows.to_dict(orient="split", index=False)  # keeps the column order
        return write_json(path, {"checks": self.checks.to_dict(), "spec": self.spec.to_dict(),
                                 "windows": windows})  # fmt: skip

    @classmethod
    def read(cls, path: str | Path) -> AdmissionRecord:
        data = read_json(path)
        return cls(dc.CheckResult.from_dict(data["checks"]), FeatureSpec.from_dict(data["spec"]),
                   pd.DataFrame(**data["windows"]))  # fmt: skip


@dataclass
class Admitted:
    """What the checks let through: the contract's findings, the feature spec and the split."""

    checks: dc.CheckResult
    spec: FeatureSpec
    split: Split

    @property
    def windows(self) -> pd.DataFrame:
        """Rows and positive rate of every window and batch."""
        return self.split.summary(self.spec.target)

    @property
    def record(self) -> AdmissionRecord:
        return AdmissionRecord(self.checks, self.spec, self.windows)


def admit(
    manifest: dict,
    tables: dict[str, pd.DataFrame],
    *,
    settings: DataSettings,
    contract: dict,
    current: list[Path],
    derivation: derived.Source,
) -> Admitted:
    """Contract, target, dataset and split checks, then the current batch files, then the
    user's derived features (`derivation`) on every window; raises on error."""
    checks = dc.validate_snapshot(
        manifest, tables, contract, settings.target, settings.positive_label
    )
    checks.raise_if_failed()
    data, spec = dataset.build_dataset(tables, manifest, settings)
    split = time_split(data, spec, settings, manifest["source"])
    split.batches = batches.with_current_batches(split.batches, current, spec, settings)
    derive(split, spec, derivation)
    spec.windows = split.windows()
    return Admitted(checks, spec, split)


def derive(split: Split, spec: FeatureSpec, source: derived.Source) -> None:
    """The user's derivation on every window: the model's columns described on the training
    window and recorded in `spec.derived`, the new ones added beside the inputs (monitoring
    compares them; the models compute their own from the inputs)."""
    numeric, categorical = derived.describe(source, split.train, spec.numeric, spec.categorical,
                                            spec.target)  # fmt: skip
    spec.derived = {"file": source.file, "function": source.function,
                    "sha256": source.sha256, "numeric": numeric, "categorical": categorical,
                    "code": source.code}  # fmt: skip
    for name in ("train", "holdout", "batches"):
        setattr(split, name, derived.with_derived(getattr(split, name), spec))
