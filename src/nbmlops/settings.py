"""Parameters enter here: each block of the env file is checked once, with a message that names
the file, the key and the problem.

Every block is a frozen dataclass built the same way, `Block.from_params(params, where)`: keys
the block does not know are refused, then the values are checked together.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar, Self

from .errors import ConfigError
from .metrics.sequential import LOSSES
from .spec import METRICS

#: Where a block's values came from, when the caller cannot name the env file.
PARAMETERS = "pipeline parameters"
#: Cells of a CSV file read as missing unless `data.missing_values` says otherwise. Nothing
#: else is: `n/a`, `-` or `?` in a numeric column stop the build and name the cells.
MISSING_VALUES = ("", "NA", "N/A", "NaN", "nan", "null", "NULL", "None")
#: What a None among `missing_values` stands for (see DataSettings._normalise).
NULL_SPELLINGS = ("null", "NULL", "None")


@dataclass(frozen=True)
class Settings:
    """Base of every settings block; `block` is its key in the env file."""

    block: ClassVar[str] = ""

    @classmethod
    def keys(cls) -> set[str]:
        return {f.name for f in fields(cls)}

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None, where: str = PARAMETERS) -> Self:
        """Build from an env file's block; unknown or missing keys and bad values: ConfigError."""
        known = cls.keys()
        if params is not None and not isinstance(params, Mapping):
            example = ", ".join(f"{k}: ..." for k in sorted(known))
            raise ConfigError(f"{where}: `{cls.block}` must be a mapping of its keys "
                              f"({{{example}}}), not {params!r}")  # fmt: skip
        params = dict(params or {})
        unknown = sorted(set(params) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {[f'{cls.block}.{k}' for k in unknown]}; "
                              f"known: {sorted(known)}")  # fmt: skip
        required = [f.name for f in fields(cls)
                    if f.default is MISSING and f.default_factory is MISSING]  # fmt: skip
        missing = [k for k in required if k not in params]
        if missing:
            raise ConfigError(
                f"{where}: `{cls.block}` needs {[f'{cls.block}.{k}' for k in missing]}"
            )
        settings = cls(**cls._nested(cls._normalise(params), where))
        settings._check(where)
        return settings

    @classmethod
    def _normalise(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Values as the fields hold them (a YAML list as a tuple, ...)."""
        return params

    @classmethod
    def _nested(cls, params: dict[str, Any], where: str) -> dict[str, Any]:
        """Blocks inside the block, built (and checked) as blocks of their own."""
        return params

    def _check(self, where: str) -> None:
        """Refuse values that are wrong together."""


@dataclass(frozen=True)
class DataSettings(Settings):
    """How the raw source becomes a labelled, time-ordered dataset and how it is split."""

    block: ClassVar[str] = "data"

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
    missing_values: tuple[str, ...] = MISSING_VALUES
    #: "first": the first `reference_periods` periods train and are held out, whatever comes
    #: later; "latest": the newest `batch_periods` periods are batches, the `holdout_periods`
    #: before them are held out, and the `train_periods` before those train (None: every
    #: earlier period), so a build on new data trains on what is recent.
    split: str = "first"
    train_periods: int | None = None
    batch_periods: int = 1

    @classmethod
    def _normalise(cls, params: dict[str, Any]) -> dict[str, Any]:
        if "drop_columns" in params:
            params["drop_columns"] = tuple(params["drop_columns"] or ())
        if "missing_values" in params:
            # YAML reads an unquoted `null` as None, and Ploomber turns the text `null`, `NULL`
            # and `None` (any case) into None too: a None stands for all three spellings
            params["missing_values"] = tuple(dict.fromkeys(
                word for v in params["missing_values"] or ()
                for word in (NULL_SPELLINGS if v is None else (str(v),))
            ))  # fmt: skip
        return params

    def _check(self, where: str) -> None:
        if not self.target:
            raise ConfigError(f"{where}: `target` must name the column to predict")
        if not 0 < self.sample_frac <= 1:
            raise ConfigError(f"{where}: `sample_frac` must be in (0, 1], got {self.sample_frac!r}")
        if self.holdout_periods < 1 or self.reference_periods <= self.holdout_periods:
            raise ConfigError(
                f"{where}: `reference_periods` must exceed `holdout_periods` (>= 1): got "
                f"{self.reference_periods} and {self.holdout_periods}"
            )
        if self.split not in SPLITS:
            raise ConfigError(f"{where}: `split` must be one of {', '.join(SPLITS)}, not "
                              f"{self.split!r}")  # fmt: skip
        if self.split == "latest":
            self._check_latest(where)
        elif self.train_periods is not None:
            raise ConfigError(f"{where}: `train_periods` applies to `split: latest`; with "
                              "`split: first` the training window is the first "
                              "`reference_periods - holdout_periods` periods")  # fmt: skip
        elif self.time_column is None and self.row_periods < self.reference_periods + 1:
            raise ConfigError(
                f"{where}: without a time column the rows are split into `row_periods` "
                f"({self.row_periods}) parts, which must leave a batch after the "
                f"`reference_periods` ({self.reference_periods}): set row_periods to at least "
                f"{self.reference_periods + 1}"
            )

    def _check_latest(self, where: str) -> None:
        for key in ("train_periods", "batch_periods"):
            value = getattr(self, key)
            if value is None and key == "train_periods":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{where}: `{key}` must be a whole number of periods (at "
                                  f"least 1){', or null' * (key == 'train_periods')}, not "
                                  f"{value!r}")  # fmt: skip
        needed = self.holdout_periods + self.batch_periods + 1
        if self.time_column is None and self.row_periods < needed:
            raise ConfigError(f"{where}: without a time column the rows are split into "
                              f"`row_periods` ({self.row_periods}) parts; `split: latest` needs "
                              f"at least {needed}")  # fmt: skip


#: How the periods are split into training, held-out and batches (`data.split`).
SPLITS = ("first", "latest")


@dataclass(frozen=True)
class StoreSettings(Settings):
    """The env file's `mlflow` block: where tracking and registry live, and the model's name."""

    block: ClassVar[str] = "mlflow"

    tracking_uri: str
    artifact_root: str
    model_name: str


@dataclass(frozen=True)
class ExperimentSettings(Settings):
    """The `serving.experiment` block: a canary or an A/B test of a registry alias."""

    block: ClassVar[str] = "serving.experiment"

    share: float  # of the records the alias answers (0: none, the experiment is off)
    alias: str = "challenger"  # the registry alias that answers them
    key: str | None = None  # a request field: the same value always gets the same arm
    metric: str = "brier"  # the per-record loss the arms are compared on
    confidence: float = 0.95  # of the sequential test, valid at every look
    min_gain: float = 0.02  # the share of the champion's loss the canary must save to be worth it
    min_labels: int = 300  # labels in each arm before any decision (the variances come from them)
    check_seconds: float = 30.0  # how often the service reads the labels and decides
    max_p99_ms: float | None = None  # the canary's latency limit (None: the champion's deadline)

    def _check(self, where: str) -> None:
        if isinstance(self.share, bool) or not 0 <= self.share < 1:
            raise ConfigError(f"{where}: serving.experiment.share must be at least 0 and below "
                              f"1, not {self.share!r}")  # fmt: skip
        if self.metric not in LOSSES:
            raise ConfigError(f"{where}: serving.experiment.metric must be one of "
                              f"{', '.join(LOSSES)}, not {self.metric!r}")  # fmt: skip
        if not 0.5 <= self.confidence < 1 or not 0 <= self.min_gain < 1:
            raise ConfigError(f"{where}: serving.experiment.confidence must be in [0.5, 1) and "
                              "min_gain in [0, 1)")  # fmt: skip
        if self.min_labels < 2 or self.check_seconds <= 0 or (self.max_p99_ms or 1) <= 0:
            raise ConfigError(f"{where}: serving.experiment.min_labels must be at least 2, "
                              "check_seconds and max_p99_ms positive")  # fmt: skip
        if not self.alias or not isinstance(self.alias, str):
            raise ConfigError(f"{where}: serving.experiment.alias must name a registry alias")


@dataclass(frozen=True)
class ServingSettings(Settings):
    """The env file's `serving` block."""

    block: ClassVar[str] = "serving"

    archive: str = "data/requests"  # relative to the env file's folder
    host: str = "127.0.0.1"
    port: int = 8000
    latency_budget_ms: float = 50.0  # every answer within this, from the fallback if need be
    fallback_reserve_ms: float = 15.0  # of the budget, kept for the fallback to answer in
    fallback_deadline_ms: float = 1000.0  # a fallback with no answer by then: 503
    shadows: tuple[str, ...] = ("challenger",)  # registry aliases scored beside the champion
    shadow: bool = True
    poll_seconds: float = 1.0  # how often the registry's aliases are read
    rotate_rows: int = 100_000  # archive: a new file after this many records...
    rotate_seconds: float = 3600.0  # ...or this many seconds
    archive_sync_seconds: float = 1.0  # records are synced to the disk at least this often
    archive_backlog_mb: float = 64.0  # requests waiting to be archived; past it, 503
    breaker_failures: int = 5  # champion failures in a row before it is skipped
    breaker_cooldown_seconds: float = 5.0  # then one request tries it again
    max_body_kb: int = 2048  # a larger request body is refused (413) before it is read whole
    max_text_chars: int = 1000  # a longer text field is refused (422)
    request_read_seconds: float = 10.0  # a request not received whole by then: connection closed
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")  # Host header names
    token_env: str = "NBMLOPS_SERVING_TOKEN"  # when this variable is set, a bearer token
    docs: bool = False  # FastAPI's /docs and /openapi.json
    experiment: ExperimentSettings | None = None  # a canary or A/B test (docs/serving.md)
    label_sample: float = 0.0  # the share of answered records `make label-queue` queues

    @classmethod
    def _normalise(cls, params: dict[str, Any]) -> dict[str, Any]:
        for key in ("shadows", "allowed_hosts"):
            if key in params:
                params[key] = tuple(params[key] or ())
        return params

    @classmethod
    def _nested(cls, params: dict[str, Any], where: str) -> dict[str, Any]:
        if params.get("experiment") is not None:
            params["experiment"] = ExperimentSettings.from_params(params["experiment"], where)
        return params

    def _check(self, where: str) -> None:
        if not 0 <= self.fallback_reserve_ms < self.latency_budget_ms:
            budget = self.latency_budget_ms
            raise ConfigError(f"{where}: serving.fallback_reserve_ms must be at least 0 and "
                              f"below serving.latency_budget_ms ({budget})")  # fmt: skip
        positive = ("rotate_rows", "rotate_seconds", "poll_seconds", "archive_sync_seconds",
                    "archive_backlog_mb", "max_body_kb", "max_text_chars",
                    "fallback_deadline_ms", "request_read_seconds")  # fmt: skip
        if any(getattr(self, key) <= 0 for key in positive):
            raise ConfigError(f"{where}: serving.{', '.join(positive)} must be positive")
        if isinstance(self.label_sample, bool) or not 0 <= self.label_sample <= 1:
            raise ConfigError(f"{where}: serving.label_sample is a share of the answered "
                              f"records, from 0 to 1, not {self.label_sample!r}")  # fmt: skip


#: When monitoring of the last period makes a policy retrain: never, on a failing period, or
#: on a period that fails or warns. YAML reads an unquoted `off` or `no` as False: never.
TRIGGERS = ("never", "fail", "warn")


@dataclass(frozen=True)
class RetrainPolicy(Settings):
    """When a model is retrained, on which rows, and how it reaches production.

    At each cut-off only the rows of earlier periods exist. A new challenger trains on the
    `window` (every earlier period: "expanding", or the latest N periods) before the held-out
    periods, must pass the gates on those held-out periods against the champion, then scores
    `shadow_periods` periods in shadow beside the champion and is promoted only when the gates
    pass on the rows it shadowed (0: promoted at once on the held-out gate).
    """

    block: ClassVar[str] = "retraining"

    window: str | int = "expanding"  # or N: the latest N periods
    every: int = 0  # retrain when the newest model is this many periods old (0: not on a clock)
    trigger: str = "never"  # retrain when monitoring of the last served period says so
    shadow_periods: int = 1

    @classmethod
    def _normalise(cls, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("trigger") in (None, False):
            params["trigger"] = "never"
        return params

    def _check(self, where: str) -> None:
        window_ok = self.window == "expanding" or (
            isinstance(self.window, int) and not isinstance(self.window, bool) and self.window > 0
        )
        if not window_ok:
            raise ConfigError(f"{where}: window must be 'expanding' or a number of periods "
                              f"(at least 1), not {self.window!r}")  # fmt: skip
        for key in ("every", "shadow_periods"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{where}: {key} must be a whole number of periods "
                                  f"(0 or more), not {value!r}")  # fmt: skip
        if self.trigger not in TRIGGERS:
            raise ConfigError(f"{where}: trigger must be one of {', '.join(TRIGGERS)}, "
                              f"not {self.trigger!r}")  # fmt: skip

    def due_after(self, periods: int) -> bool:
        """Whether a model this many periods old is due on the clock (`every`)."""
        return bool(self.every) and periods >= self.every

    def triggered_by(self, status: str) -> bool:
        """Whether a period's monitoring verdict (pass, warn, fail) triggers a retrain."""
        return status in {"fail": ("fail",), "warn": ("fail", "warn")}.get(self.trigger, ())

    def describe(self) -> str:
        """In words: "every 1 period on the latest 3 periods, 1 period in shadow"."""
        when = [f"every {self.every} period{'s' if self.every != 1 else ''}"] if self.every else []
        if self.trigger != "never":
            when.append("when monitoring " + ("fails" if self.trigger == "fail" else "warns"))
        window = ("every earlier period" if self.window == "expanding" else
                  f"the latest {self.window} period{'s' if self.window != 1 else ''}")  # fmt: skip
        if not when:
            return "never retrained"
        shadow = (f"{self.shadow_periods} period{'s' if self.shadow_periods != 1 else ''} in "
                  "shadow" if self.shadow_periods else "promoted on the held-out gate")  # fmt: skip
        return f"retrained {' or '.join(when)} on {window}; {shadow}"


#: The `backtest` block's one key that is not a policy: each period's labels are known this
#: many periods after it was served (0: at once); every policy is replayed both ways.
LABEL_DELAY = "label_delay"


def backtest_policies(
    params: Mapping[str, Any] | None, where: str = PARAMETERS
) -> dict[str, RetrainPolicy]:
    """The env file's `backtest` block: policy name to its settings, at least one."""
    policies = {k: v for k, v in params.items() if k != LABEL_DELAY} if isinstance(
        params, Mapping) else {}  # fmt: skip
    if not policies:
        raise ConfigError(f"{where}: `backtest` must map policy names to their settings, "
                          "e.g. never: {every: 0}")  # fmt: skip
    backtest_label_delay(params, where)
    return {str(name): RetrainPolicy.from_params(value, f"{where}: backtest.{name}")
            for name, value in policies.items()}  # fmt: skip


def backtest_label_delay(params: Mapping[str, Any] | None, where: str = PARAMETERS) -> int:
    """The `backtest` block's `label_delay`: periods until a period's labels are known."""
    value = (params or {}).get(LABEL_DELAY, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}: backtest.{LABEL_DELAY} must be a whole number of periods "
                          f"(0: labels known at once), not {value!r}")  # fmt: skip
    return value


@dataclass(frozen=True)
class FeatureSettings(Settings):
    """The env file's `features` block: the file of the user's derived features and its
    function (`nbmlops.derived`)."""

    block: ClassVar[str] = "features"

    file: str
    function: str = "derive"

    def _check(self, where: str) -> None:
        if not str(self.file).endswith(".py"):
            raise ConfigError(f"{where}: features.file must be a Python file, not {self.file!r}")
        if not str(self.function).isidentifier():
            raise ConfigError(f"{where}: features.function must be a function's name, not "
                              f"{self.function!r}")  # fmt: skip


#: How a candidate's probabilities are calibrated (`calibration.method`).
CALIBRATIONS = ("sigmoid", "isotonic", "none")
#: The rules that choose the decision threshold on the calibration slice, besides a number.
THRESHOLD_RULES = ("best_f1", "precision", "recall")


@dataclass(frozen=True)
class CalibrationSettings(Settings):
    """The env file's `calibration` block: probabilities that mean what they say, and the
    decision threshold chosen with them.

    Each candidate is fitted on the older part of the training window; the newest `share` of
    it (in time order) is held back to fit a map from the estimator's probability to the
    observed rate (`sigmoid`: two parameters on the log-odds, order kept; `isotonic`: a
    monotone step function; `none`: no map) and to choose the threshold by `threshold`:
    `best_f1`, `{precision: 0.6}` (the most recall at that precision or more),
    `{recall: 0.8}` (the most precision at that recall or more), or a number. With `none` and
    a number, nothing is held back: the estimator is fitted on the whole window.
    """

    block: ClassVar[str] = "calibration"

    method: str = "sigmoid"
    share: float = 0.2
    threshold: Any = "best_f1"

    @classmethod
    def _normalise(cls, params: dict[str, Any]) -> dict[str, Any]:
        threshold = params.get("threshold", "best_f1")
        if isinstance(threshold, Mapping) and len(threshold) == 1:
            ((rule, target),) = threshold.items()
            threshold = (str(rule), target)
        method = params.get("method", "sigmoid")
        # `method: none` can arrive as None (Ploomber's env reads the word as a null)
        return params | {"threshold": threshold, "method": "none" if method is None else method}

    def _check(self, where: str) -> None:
        if self.method not in CALIBRATIONS:
            raise ConfigError(f"{where}: calibration.method must be one of "
                              f"{', '.join(CALIBRATIONS)}, not {self.method!r}")  # fmt: skip
        if (
            isinstance(self.share, bool)
            or not isinstance(self.share, int | float)
            or not (0 < self.share < 1)
        ):
            raise ConfigError(f"{where}: calibration.share must be a fraction between 0 and 1 "
                              f"(of the training window), not {self.share!r}")  # fmt: skip
        rule = self.threshold
        number = isinstance(rule, int | float) and not isinstance(rule, bool)
        ok = (number and 0 < rule < 1) or rule == "best_f1" or (
            isinstance(rule, tuple) and rule[0] in THRESHOLD_RULES[1:]
            and isinstance(rule[1], int | float) and 0 < rule[1] <= 1
        )  # fmt: skip
        if not ok:
            raise ConfigError(f"{where}: calibration.threshold must be best_f1, {{precision: P}}, "
                              f"{{recall: R}} (P, R in (0, 1]) or a number in (0, 1), not "
                              f"{self.threshold!r}")  # fmt: skip

    @property
    def holds_back(self) -> bool:
        """Whether a slice of the training window is held back (for the map or the rule)."""
        return self.method != "none" or not isinstance(self.threshold, int | float)


#: How the template prepares the columns before a candidate's estimator (`prep`): one-hot
#: categories and scaled numbers; ordinal codes with medians filled in (trees); ordinal codes
#: with missing values kept, categories declared to the estimator (histogram boosting).
PREPARATIONS = ("onehot", "ordinal", "native")
_CANDIDATE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")
#: Names a candidate may not take: the evaluate task's file beside the candidates' models
#: (models/best.json) has the first.
RESERVED_NAMES = ("best",)
_DOTTED_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+\Z")


def candidate_grid(candidates: Mapping[str, Any] | None, where: str | None = None) -> list[dict]:
    """The env file's `candidates` block as one declaration per candidate, in the file's order:
    `{"name", "estimator", "params"}` and `prep` where given. Pipeline.yaml's training grid is
    this list, so each training task receives its own candidate and no other.

    Only the block's shape is checked here (nothing is imported); the estimators and their
    parameters are checked when the build renders (`training.candidates.check`).
    """
    import os

    where = where or os.environ.get("PLOOMBER_ENV_FILENAME", "env.yaml")
    example = "e.g. logreg: {estimator: sklearn.linear_model.LogisticRegression, params: {C: 1.0}}"
    if not isinstance(candidates, Mapping) or not candidates:
        raise ConfigError(f"{where}: `candidates` must name at least one candidate, {example}")
    grid = []
    for name, value in candidates.items():
        if not isinstance(name, str) or not _CANDIDATE_NAME.match(name):
            raise ConfigError(f"{where}: candidate name {name!r} is not a name of letters, digits, "
                              "'-' and '_' starting with a letter (quote it if YAML read it as "
                              "a boolean or a number)")  # fmt: skip
        if name in RESERVED_NAMES:
            raise ConfigError(f"{where}: candidate name {name!r} is taken by the comparison's own "
                              "file (models/best.json); choose another")  # fmt: skip
        key = f"{where}: candidates.{name}"
        if isinstance(value, str):
            value = {"estimator": value}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping with `estimator` and `params`, {example}")
        unknown = sorted(set(value) - {"estimator", "params", "prep"}, key=str)
        if unknown:
            raise ConfigError(f"{key}: unknown key(s) {unknown}; known: estimator, params, prep")
        estimator = value.get("estimator")
        if not isinstance(estimator, str) or not _DOTTED_PATH.match(estimator):
            raise ConfigError(f"{key}.estimator must be the dotted path of an estimator class, "
                              f"e.g. sklearn.ensemble.RandomForestClassifier, not "
                              f"{estimator!r}")  # fmt: skip
        params = value.get("params") or {}
        if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
            raise ConfigError(f"{key}.params must map parameter names to values, not {params!r}")
        declared = {"name": name, "estimator": estimator, "params": dict(params)}
        if value.get("prep") is not None:
            if value["prep"] not in PREPARATIONS:
                raise ConfigError(f"{key}.prep must be one of {', '.join(PREPARATIONS)}, not "
                                  f"{value['prep']!r}")  # fmt: skip
            declared["prep"] = value["prep"]
        grid.append(declared)
    return grid


#: The env file's blocks, by key.
BLOCKS: dict[str, type[Settings]] = {
    s.block: s
    for s in (
        DataSettings,
        StoreSettings,
        ServingSettings,
        ExperimentSettings,
        CalibrationSettings,
        FeatureSettings,
    )
}


def check_selection_metric(metric, where: str = "env file") -> str:
    """The env's `selection_metric` (the metric that picks the best candidate), refused with
    the metrics it may name when it names none of them."""
    if metric not in METRICS:
        raise ConfigError(f"{where}: selection_metric {metric!r} is not a metric the candidates "
                          f"are compared on (one of {', '.join(METRICS)})")  # fmt: skip
    return metric
