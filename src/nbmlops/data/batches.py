"""Batches to monitor beyond the split: files of new rows (`current_batches`), and the two
control batches drawn from the held-out window (one as it is, one shifted)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError, Problem
from ..settings import DataSettings
from ..spec import BATCH, CONTROL, PERIOD, REFERENCE, TIME, TRAINING, FeatureSpec
from .dataset import encode_target, parse_times, text_cells
from .sources import read_table, source_files


def current_files(pattern: str | None, root: str | Path, within_root: bool) -> list[Path]:
    """Files matching the `current_batches` glob (relative to `root`), sorted by name."""
    if not pattern:
        return []
    files = sorted(p for p in Path(root).glob(pattern) if p.is_file())
    for path in files:
        source_files(str(path), root, within_root)  # refuses a file outside the project
    return files


def read_current_batch(path: Path, spec: FeatureSpec, s: DataSettings) -> pd.DataFrame:
    """One file of new rows as a batch the models can score and the monitor can compare.

    Every feature the models were trained on must be a column (empty values are allowed);
    the target is optional: without it the batch is monitored for drift only.
    """
    df = read_table(path, s.missing_values)
    file = str(path)
    missing = [c for c in spec.columns if c not in df.columns]
    if missing:
        raise DataError([
            Problem(file, col, "feature the models were trained on is missing from this batch",
                    "add the column (empty values are allowed)")
            for col in missing
        ])  # fmt: skip
    out = pd.DataFrame(index=df.index)
    for col in spec.numeric:
        text = text_cells(df[col])
        if text:
            raise DataError(Problem(file, col, f"numeric feature holds text in {text}"))
        out[col] = pd.to_numeric(df[col]).astype("float64")
    for col in spec.categorical:
        out[col] = df[col].astype("string").astype(object).where(df[col].notna(), None)
    labels = df[spec.target] if spec.target in df.columns else None
    if labels is None or labels.isna().all():
        out[spec.target] = np.nan
    elif set(labels.dropna().unique()) <= {0, 1}:  # already 0/1, as the flights target is
        out[spec.target] = labels.astype("float64")
    else:
        out[spec.target] = encode_target(labels.dropna(), s.positive_label, file, spec.target)
    has_time = s.time_column and s.time_column in df
    out[TIME] = parse_times(df[s.time_column]) if has_time else pd.NaT
    out[PERIOD] = out[BATCH] = path.name.split(".")[0]
    out[CONTROL] = ""
    return out.reset_index(drop=True)


def with_current_batches(
    batches: pd.DataFrame, files: list[Path], spec: FeatureSpec, s: DataSettings
) -> pd.DataFrame:
    """The period batches followed by one batch per current file (named by the file's stem)."""
    extra = [read_current_batch(path, spec, s) for path in files]
    names = [str(b[BATCH].iloc[0]) for b in extra]
    clash = sorted({n for n in names if names.count(n) > 1 or n in set(batches[BATCH])})
    if clash:
        where = ", ".join(map(str, files))
        raise DataError(Problem(where, None, f"batch name(s) {clash} used twice", "rename files"))
    for name, path in zip(names, files, strict=True):
        if name in (REFERENCE, TRAINING):
            said = f"a batch cannot be named {name!r}: the score task gives that name to a window"
            raise DataError(Problem(str(path), None, said, "rename the file"))
    if not extra:
        return batches
    control = batches[CONTROL] != ""
    return pd.concat([batches[~control], *extra, batches[control]], ignore_index=True)


def control_batches(holdout: pd.DataFrame, spec: FeatureSpec, seed: int) -> pd.DataFrame:
    """Two batches that check the monitoring itself.

    `control-same` is half of the reference window, so no drift should be found;
    `control-shifted` is the other half with every numeric feature moved by one standard
    deviation, so drift must be found.
    """
    same = holdout.sample(frac=0.5, random_state=seed)
    shifted = holdout.drop(same.index).copy()
    for col in spec.numeric:
        shifted[col] = shifted[col] + holdout[col].std()
    same = same.assign(**{BATCH: "control-same", CONTROL: "same"})
    shifted = shifted.assign(**{BATCH: "control-shifted", CONTROL: "shifted"})
    return pd.concat([same, shifted])
