"""Parameters enter here: checked once, with a message that names the parameter."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class DataSettings:
    """How the raw source becomes a labelled, time-ordered dataset and how it is split."""

    target: str
    positive_label: Any = None
    time_column: str | None = None
    period: str = "M"
    row_periods: int = 12
    reference_periods: int = 4
    holdout_periods: int = 1
    sample_frac: float = 1.0
    seed: int = 0
    cancelled_as_late: bool = False
    drop_columns: tuple[str, ...] = ()
    max_categories: int = 200
    min_rows_per_window: int = 50
    control_batches: bool = False

    @classmethod
    def from_params(cls, **params: Any) -> DataSettings:
        """Build from notebook parameters; unknown names and bad values raise ConfigError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ConfigError(f"unknown data parameter(s) {unknown}; known: {sorted(known)}")
        if "drop_columns" in params:
            params["drop_columns"] = tuple(params["drop_columns"] or ())
        settings = cls(**params)
        settings._check()
        return settings

    def _check(self) -> None:
        if not self.target:
            raise ConfigError("`target` must name the column to predict")
        if not 0 < self.sample_frac <= 1:
            raise ConfigError(f"`sample_frac` must be in (0, 1], got {self.sample_frac!r}")
        if self.holdout_periods < 1 or self.reference_periods <= self.holdout_periods:
            raise ConfigError(
                "`reference_periods` must exceed `holdout_periods` (>= 1): got "
                f"{self.reference_periods} and {self.holdout_periods}"
            )
        if self.row_periods < self.reference_periods + 1:
            raise ConfigError("`row_periods` must leave at least one batch after the reference")
