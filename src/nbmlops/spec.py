"""The feature spec and the model constants: what every part agrees on about a model's inputs.

Data writes the spec (`features.json`); training, monitoring, serving and the registry read it.
Nothing here imports another part of the package but storage.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from .storage import read_json, write_json

#: Columns the data part adds to every window: the row's time, its period, its batch, and
#: which control batch it belongs to ("" for real data).
TIME = "_time"
PERIOD = "_period"
BATCH = "_batch"
CONTROL = "_control"

#: A probability at or above this is a positive decision.
THRESHOLD = 0.5
#: Metrics where larger is better; the others (brier, log_loss) are losses.
HIGHER_IS_BETTER = ("roc_auc", "pr_auc", "f1", "precision", "recall", "accuracy")


@dataclass
class FeatureSpec:
    """Which columns the models see, and what happened to the rows on the way."""

    target: str
    numeric: list[str]
    categorical: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    dropped_columns: dict[str, str] = field(default_factory=dict)
    windows: dict[str, object] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return self.numeric + self.categorical

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
