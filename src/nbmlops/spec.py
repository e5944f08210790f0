"""The feature spec and the model constants: what every part agrees on about a model's inputs.

Data writes the spec (`features.json`); training, monitoring, serving and the registry read it.
Nothing here imports another part of the package but storage.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .storage import read_json, write_json

#: Columns the data part adds to every window: the row's time, its period, its batch, and
#: which control batch it belongs to ("" for real data).
TIME = "_time"
PERIOD = "_period"
BATCH = "_batch"
CONTROL = "_control"
#: The names the score task gives the held-out window and the training window beside the
#: batches: no batch may take them.
REFERENCE = "reference"
TRAINING = "training"

#: A probability at or above this is a positive decision.
THRESHOLD = 0.5
#: Metrics where larger is better; the others (brier, log_loss) are losses.
HIGHER_IS_BETTER = ("roc_auc", "pr_auc", "f1", "precision", "recall", "accuracy")
#: Every metric the candidates are compared on: those above, and the losses.
METRICS = HIGHER_IS_BETTER + ("brier", "log_loss")


@dataclass
class FeatureSpec:
    """Which columns the models see, and what happened to the rows on the way."""

    target: str
    numeric: list[str]
    categorical: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    dropped_columns: dict[str, str] = field(default_factory=dict)
    windows: dict[str, object] = field(default_factory=dict)
    #: The user's derivation (`nbmlops.derived`): its file, function and code, and the model's
    #: columns it returns (numeric, categorical). Empty: the model sees the input columns.
    derived: dict = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        """The input columns: what a request, a batch file and the contract carry."""
        return self.numeric + self.categorical

    @property
    def model_numeric(self) -> list[str]:
        return list(self.derived["numeric"]) if self.derived else self.numeric

    @property
    def model_categorical(self) -> list[str]:
        return list(self.derived["categorical"]) if self.derived else self.categorical

    @property
    def model_columns(self) -> list[str]:
        """The columns the estimator sees: the derivation's output, or the input columns."""
        return self.model_numeric + self.model_categorical

    @property
    def derived_columns(self) -> list[str]:
        """The model's columns that are not inputs: what the derivation adds."""
        return [c for c in self.model_columns if c not in self.columns]

    @property
    def stored_columns(self) -> list[str]:
        """The columns a window of the build holds: the inputs, then the derived ones."""
        return self.columns + self.derived_columns

    def as_seen_by_model(self) -> FeatureSpec:
        """This spec with the model's columns as its columns: what monitoring compares (the
        windows hold them), so drift is measured on what the model sees."""
        return replace(self, numeric=self.model_numeric, categorical=self.model_categorical,
                       derived={})  # fmt: skip

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FeatureSpec:
        return cls(**data)

    @classmethod
    def read(cls, path: str | Path) -> FeatureSpec:
        """The spec a build wrote (`features.json`)."""
        return cls.from_dict(read_json(path))

    def write(self, path: str | Path) -> Path:
        return write_json(path, self.to_dict())


def _bounds(label: str) -> tuple[object, object] | None:
    """When a period label starts and ends, comparable with another label of any kind the
    split makes: `part-03` (row order), `2024-03-04/2024-03-10` (a week), `2013-05` or
    `2013-11-15` (calendar periods, or a current-batch file named by date); None otherwise."""
    import re

    import pandas as pd

    label = str(label).strip()
    if match := re.fullmatch(r"part-(\d+)", label):
        return int(match[1]), int(match[1])
    try:
        if "/" in label:
            first, last = label.split("/", 1)
            return pd.Timestamp(first), pd.Timestamp(last) + pd.Timedelta(days=1)
        period = pd.Period(label)
        return period.start_time, period.end_time
    except (ValueError, TypeError):
        return None


def period_after(label: str, end: str) -> bool:
    """Whether period `label` starts after period `end` is over. A label that names no period
    (a current-batch file called `incoming`) counts as later: current batches are new rows."""
    found, last = _bounds(label), _bounds(end)
    if found is None or last is None:
        return found is None
    if isinstance(found[0], int) != isinstance(last[0], int):
        return False  # row parts and calendar periods do not compare
    return found[0] > last[0] if isinstance(found[0], int) else found[0] >= last[1]
