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


@dataclass(frozen=True)
class ServingSettings:
    """The env file's `serving` block, checked once."""

    archive: str
    host: str = "127.0.0.1"
    port: int = 8000
    latency_budget_ms: float = 50.0  # every answer within this, from the fallback if need be
    fallback_reserve_ms: float = 15.0  # of the budget, kept for the fallback to answer in
    shadows: tuple[str, ...] = ("challenger",)  # registry aliases scored beside the champion
    shadow: bool = True
    poll_seconds: float = 1.0  # how often the registry's aliases are read
    rotate_rows: int = 100_000  # archive: a new file after this many records...
    rotate_seconds: float = 3600.0  # ...or this many seconds
    breaker_failures: int = 5  # champion failures in a row before it is skipped
    breaker_cooldown_seconds: float = 5.0  # then one request tries it again

    @classmethod
    def from_params(cls, params: dict[str, Any], where: str) -> ServingSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {['serving.' + k for k in unknown]}; "
                              f"known: {sorted(known)}")  # fmt: skip
        if "shadows" in params:
            params = params | {"shadows": tuple(params["shadows"] or ())}
        settings = cls(**params)
        if not 0 <= settings.fallback_reserve_ms < settings.latency_budget_ms:
            budget = settings.latency_budget_ms
            raise ConfigError(f"{where}: serving.fallback_reserve_ms must be at least 0 and "
                              f"below serving.latency_budget_ms ({budget})")  # fmt: skip
        if settings.rotate_rows < 1 or settings.rotate_seconds <= 0 or settings.poll_seconds <= 0:
            raise ConfigError(f"{where}: serving.rotate_rows, rotate_seconds and poll_seconds "
                              "must be positive")  # fmt: skip
        return settings
