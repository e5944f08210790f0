"""`nbmlops init NAME --source FILE --target COLUMN`: a new project for one dataset.

It reads the file once, profiles it, and writes what a build needs, ready to review:
`env.NAME.yaml` (its own folders, model name, baseline and a split the data satisfies),
`contracts/NAME.yaml` (inferred from the data) and `model/gates.NAME.yaml` (measured against a
trivial model on the data's own held-out window). Before it writes anything it admits the data
through the very checks the build's ingest task runs, so `make build ENV=NAME` passes them.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import yaml

from .. import derived, storage
from ..data import admission, dataset, snapshot
from ..data import contract as dc
from ..data.split import Split, no_split_hint, propose_split
from ..errors import ConfigError, DataError, PipelineError, Problem
from ..monitoring.rules import MonitorRules
from ..registry.gates import trivial_gates
from ..settings import MISSING_VALUES, DataSettings
from ..spec import TIME

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,40}$")
#: Text that stands for a missing number: added to `missing_values` when a numeric column
#: holds it (and nothing else that is not a number).
MISSING_WORDS = {"n/a", "na", "nan", "none", "null", "missing", "?", "-", "--", ".", "#n/a"}
#: Of the rows a date-like column must parse, to be called dates.
DATE_SHARE = 0.99
#: Of the rows after the training window, the share holding values training never saw (beyond
#: its range, or a category it lacks) from which a column that follows the time is no feature.
UNSEEN_LATER = 0.5
#: The rank correlation with the time order from which a column follows the time.
FOLLOWS_TIME = 0.9


@dataclass
class Proposal:
    """What `init` found and decided, and the files it wrote."""

    name: str
    source: str
    manifest: dict
    settings: DataSettings
    admitted: admission.Admitted
    notes: dict[str, str]
    gates: dict
    trivial: dict[str, float]
    date_columns: list[str]
    written: list[Path]
    labels: list


def paths(project: Path, name: str) -> dict[str, Path]:
    return {
        "env": project / f"env.{name}.yaml",
        "contract": project / "contracts" / f"{name}.yaml",
        "gates": project / "model" / f"gates.{name}.yaml",
    }


def features_file(project: Path, name: str) -> Path:
    """The project's derived features: written once, never replaced (it is the user's code)."""
    return project / "features" / f"{name}.py"


#: The derived-features file a new project starts with: it derives nothing.
FEATURES = '''"""Derived features of {name}: yours to change.

`derive` receives input rows (the input columns of products/{name}/data/features.json, as a
request or a batch file carries them) and returns the columns the models see, one row per
input row. It runs as the first step of every fitted model, so the score task and the service
compute derived columns from the raw ones: a request never carries them. Editing this file
retrains every candidate at the next build. docs/customizing.md has recipes.
"""

import pandas as pd


def derive(rows: pd.DataFrame) -> pd.DataFrame:
    # For example, a ratio of two columns and the day of week of a date's parts:
    #   return rows.assign(
    #       balance_per_product=rows["balance"] / rows["products"],
    #   ).drop(columns=["balance"])
    return rows
'''


def init_project(
    project: str | Path, name: str, source: str, target: str,
    positive=None, time: str | None = None, force: bool = False,
) -> Proposal:  # fmt: skip
    """Profile `source` and write the project `name`; raises PipelineError, writing nothing."""
    project = Path(project).resolve()
    if not NAME.match(name):
        raise ConfigError(f"project name {name!r}: use lower-case letters, digits, '-' and '_'")
    files = paths(project, name)
    taken = [str(p.relative_to(project)) for p in files.values() if p.exists()]
    if taken and not force:
        raise ConfigError(
            f"{', '.join(taken)} already exist(s); pass --force (make init FORCE=1) to replace"
        )
    source = _within(project, source)
    settings = DataSettings.from_params(
        {"target": target, "positive_label": positive, "time_column": time}, "nbmlops init"
    )
    manifest, tables = snapshot.read_source(source, project / "data" / "raw" / name,
                                            root=project, within_root=True,
                                            missing_values=settings.missing_values)  # fmt: skip
    words = _missing_words(tables["data"], exclude={target, time})
    if words:  # read once more, with those words as missing: the build will read it so
        settings = replace(settings, missing_values=settings.missing_values + tuple(words))
        manifest, tables = snapshot.read_source(source, project / "data" / "raw" / name,
                                                root=project, within_root=True,
                                                missing_values=settings.missing_values)  # fmt: skip
    raw = tables["data"]
    checks = dc.check_target(raw, source, target, positive)
    checks.raise_if_failed()
    inferred = dc.infer_table(raw, time_column=time, target=target,
                              max_categories=settings.max_categories)  # fmt: skip
    dates = [] if time else _date_columns(raw, exclude={target})
    notes = dict(inferred.notes)
    for column in dates:
        notes[column] = f"dates: not a feature (pass --time {column} to split by them)"
    drop = list(dict.fromkeys([*inferred.ids, *inferred.empty, *dates]))
    settings = replace(settings, drop_columns=tuple(drop))
    data, _ = dataset.build_dataset(tables, manifest, settings)
    option = propose_split(data, target, settings)
    if option is None:
        positives = int(data[target].sum())
        raise DataError(Problem(source, target,
            f"no split of its {len(data):,} rows ({positives:,} positive) gives a training and a "
            f"held-out window of {settings.min_rows_per_window} rows with both classes and "
            "leaves a batch to monitor",
            no_split_hint(data, target, settings)))  # fmt: skip
    settings = replace(settings, **option.changes)
    contract_text = dc.contract_yaml(
        {"data": inferred},
        f"Data contract of {source}, inferred by `nbmlops init {name}` from "
        f"{len(raw):,} rows.\nReview it: ranges reach {dc.RANGE_MARGIN:.0%} beyond the values "
        "seen; new categories warn.\nKeys: see nbmlops.data.contract.",
    )
    features = features_file(project, name)
    features_text = (features.read_text(encoding="utf-8") if features.is_file() else
                     FEATURES.format(name=name))  # fmt: skip
    derivation = derived.Source(str(features.relative_to(project)), "derive", features_text)
    admitted = admission.admit(manifest, tables, settings=settings, derivation=derivation,
                               contract=yaml.safe_load(contract_text), current=[])  # fmt: skip
    disguised = time_in_disguise(admitted.split, [c for c in raw.columns if c not in drop],
                                 target)  # fmt: skip
    if disguised:  # admitted again without them: the windows are the same rows
        notes |= disguised
        settings = replace(settings, drop_columns=(*settings.drop_columns, *disguised))
        admitted = admission.admit(manifest, tables, settings=settings, derivation=derivation,
                                   contract=yaml.safe_load(contract_text), current=[])  # fmt: skip
    gates, trivial = trivial_gates(admitted.split.train[target], admitted.split.holdout[target],
                                   MonitorRules().block())  # fmt: skip
    gates_text = _gates_yaml(gates, trivial, name)
    env_text = env_yaml(name, source, settings, gates)
    # the build reads these settings again: what it would refuse is never written
    DataSettings.from_params(yaml.safe_load(env_text)["data"], str(files["env"].name))
    written = [
        *([] if features.is_file() else [storage.write_text(features, features_text)]),
        storage.write_text(files["contract"], contract_text),
        storage.write_text(files["gates"], gates_text),
        storage.write_text(files["env"], env_text),  # last: it names the two above
    ]
    labels = raw[target].dropna().unique().tolist()
    return Proposal(name, source, manifest, settings, admitted, notes, gates, trivial, dates,
                    written, labels)  # fmt: skip


def _within(project: Path, source: str) -> str:
    """`source` as a path relative to the project; a file outside it is refused."""
    path = Path(source)
    path = (path if path.is_absolute() else Path.cwd() / path).resolve()
    if not path.is_relative_to(project):
        raise DataError(Problem(source, None, f"is outside the project folder {project}",
                                "copy it into the project, e.g. under data/"))  # fmt: skip
    if not path.is_file():
        raise DataError(Problem(source, None, "file not found"))
    return str(path.relative_to(project))


def _missing_words(df: pd.DataFrame, exclude: set) -> list[str]:
    """Words of `MISSING_WORDS` that numeric columns hold as their only text."""
    found = []
    for name in df.columns:
        values = df[name]
        if name in exclude or values.dtype != object:
            continue
        distinct = pd.Series(values.dropna().unique()).astype(str)
        text = distinct[dataset.numbers_in(distinct).isna()].str.strip()
        if len(text) and len(text) < len(distinct) and set(text.str.lower()) <= MISSING_WORDS:
            found += sorted(set(text))
    return list(dict.fromkeys(found))


def time_in_disguise(split: Split, columns: list[str], target: str) -> dict[str, str]:
    """Columns that stand for the time (day of year, month, year, a counter), each with why.

    Such a column drifts by construction: the batches hold values that the training window
    (what the model learned) or the held-out window (what the monitor compares each batch
    with) never saw. A column is one when more than UNSEEN_LATER of the batches' rows lie
    beyond either window's values, and it follows the time: the same value all day on every
    day and a step now and then or the same increment every day (`_calendar`; rows several
    a day), or a rank correlation of at least FOLLOWS_TIME with the time order (row order
    without a time column). A measured feature that merely moves with the season (a
    temperature, hourly or a daily summary) moves by different amounts from day to day and
    does not follow the time's order."""
    whole = pd.concat([split.train, split.holdout, split.batches], ignore_index=True)
    timed = TIME in whole and bool(whole[TIME].notna().all())  # else split by row order
    order = whole[TIME] if timed else pd.Series(range(len(whole)), index=whole.index)
    days = order.dt.floor("D") if timed else None
    several = days is not None and len(whole) > 1.5 * days.nunique()
    found = {}
    for name in columns:
        if name == target or name not in whole:
            continue
        after = split.batches[name].dropna()
        windows = [split.train[name].dropna(), split.holdout[name].dropna()]
        if after.empty or any(w.empty for w in windows):
            continue
        numeric = pd.api.types.is_numeric_dtype(after) and not pd.api.types.is_bool_dtype(after)
        outside = max(
            float(((after < w.min()) | (after > w.max())).mean() if numeric
                  else (~after.isin(set(w))).mean())
            for w in windows
        )  # fmt: skip
        if outside <= UNSEEN_LATER:
            continue
        values = whole[name]
        rho = float(values.rank().corr(order.rank())) if numeric else 0.0  # categories: no order
        daily = several and _calendar(values, days)
        if daily or abs(rho) >= FOLLOWS_TIME:
            how = ("the same value all day, every day" if daily
                   else f"rank correlation {rho:+.2f} with the time order")  # fmt: skip
            found[name] = (f"follows the time ({how}), and {outside:.0%} of the batches' rows "
                           "hold values the training or held-out window never saw: not a "
                           "feature, it would drift by construction")  # fmt: skip
    return found


#: Of the changes from one day to the next, the share under which a daily value is a step.
RARE_CHANGES = 0.2


def _calendar(values: pd.Series, days: pd.Series) -> bool:
    """Whether `values` is a function of the day, as a calendar's fields are: the same value
    all day on every day, and from one day to the next either a step now and then (month,
    year, week, season) or the same increment every day (day of year, a day counter). A
    day's weather summary or price is the same all day too, but moves by different amounts
    almost every day."""
    by_day = values.groupby(days)
    if not (by_day.nunique() <= 1).all():
        return False
    daily = by_day.first().dropna()
    changed = daily.ne(daily.shift()).iloc[1:]
    if len(changed) < 2 or changed.mean() <= RARE_CHANGES:
        return len(changed) >= 2
    if not pd.api.types.is_numeric_dtype(daily) or pd.api.types.is_bool_dtype(daily):
        return False
    steps = daily.diff().iloc[1:]
    return bool(steps.eq(steps.mode().iloc[0]).mean() >= 1 - RARE_CHANGES)


def _date_columns(df: pd.DataFrame, exclude: set) -> list[str]:
    """Text columns of which nearly every value is a date."""
    found = []
    for name in df.columns:
        values = df[name].dropna()
        if name in exclude or values.dtype != object or values.empty:
            continue
        sample = values.sample(min(len(values), 500), random_state=0)
        if pd.to_numeric(sample, errors="coerce").notna().mean() > 0.5:
            continue
        if dataset.parse_times(sample).notna().mean() >= DATE_SHARE:
            found.append(str(name))
    return found


def _dump(value) -> str:
    return (
        yaml.safe_dump(value, default_flow_style=True, width=10**6, allow_unicode=True)
        .strip()
        .removesuffix("...")
        .strip()
    )


def _gates_yaml(gates: dict, trivial: dict[str, float], name: str) -> str:
    m = gates["metrics"]
    lines = [
        f"# Promotion gates of {name}, written by `nbmlops init` from its own held-out window.",
        "# The trivial model predicts the training window's positive rate for every row; on the",
        f"# held-out window it scores ROC AUC 0.5, PR AUC {trivial['pr_auc']:.3f}, Brier "
        f"{trivial['brier']:.3f}. The ROC AUC and PR AUC floors say: rank no worse than",
        "# that. The Brier ceiling is that of saying 0.5 for every row: calibrated candidates",
        "# should come near the trivial model's Brier or below it. Raise the floors (and lower",
        "# the ceiling) once you know what your models reach. Allowed regressions scale with",
        "# the positive rate. See model/gates.yaml for what each key means; the metric that",
        "# picks the best candidate is the env file's `selection_metric`.",
        "metrics:",
    ] + [f"  {metric}: {_dump(rule)}" for metric, rule in m.items()]
    lines += ["# What fails a monitored batch and what warns (see model/gates.yaml).",
              f"monitoring: {_dump(gates['monitoring'])}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def env_yaml(name: str, source: str, s: DataSettings, gates: dict) -> str:
    """The env file of a project made by `init`: every folder its own, every key stated."""
    here = "{{here}}"
    data = {
        "target": s.target, "positive_label": s.positive_label, "time_column": s.time_column,
        "period": s.period, "row_periods": s.row_periods,
        "reference_periods": s.reference_periods, "holdout_periods": s.holdout_periods,
        "sample_frac": 1.0, "seed": 0, "drop_columns": list(s.drop_columns),
        "missing_values": list(s.missing_values), "max_categories": s.max_categories,
        "min_rows_per_window": s.min_rows_per_window, "control_batches": False,
        "split": "first", "train_periods": None, "batch_periods": 1,
    }  # fmt: skip
    split = (f"calendar periods ({s.period}) of {s.time_column}" if s.time_column else
             f"row order, {s.row_periods} equal parts (rows taken as in time order)")  # fmt: skip
    data_lines = "\n".join(f"  {k}: {_dump(v)}" for k, v in data.items())
    return f"""# Project {name}: {source}, written by `nbmlops init {name}`. Every key is described
# in docs/configuration.md. Build it with `make build ENV={name}`.
products: "{here}/products/{name}"
reports: "{here}/reports/{name}"
site: "{here}/reports"
raw_store: "{here}/data/raw/{name}"
scored_store: "{here}/data/scored/{name}"
build_lock_wait: 0
notebook_executor: ploomber-engine

source: {_dump(source)}
data_within_project: true
contract: "{here}/contracts/{name}.yaml"
# Your derived features: a function of the input columns of each row (features/{name}.py).
features: {{file: "{here}/features/{name}.py", function: derive}}
current_batches: null
# Split by {split}: the first
# periods train, the next are held out, every later one is a monitored batch.
data:
{data_lines}

seed: 0
# The candidate models: a name, any estimator with the scikit-learn API by its dotted path, and
# its parameters; one line adds one (docs/customizing.md). The template prepares the columns
# for each by its kind (`prep: onehot | ordinal | native` overrides that).
candidates:
  logreg:
    estimator: sklearn.linear_model.LogisticRegression
    params: {{C: 1.0, max_iter: 1000}}
  hgb:
    estimator: sklearn.ensemble.HistGradientBoostingClassifier
    params: {{max_iter: 200, learning_rate: 0.1}}
  rf:
    estimator: sklearn.ensemble.RandomForestClassifier
    params: {{n_estimators: 150, min_samples_leaf: 20, n_jobs: 1}}
# Each candidate is fitted on the older part of the training window; the newest `share` of it
# maps its probability to the observed rate and chooses the decision threshold.
calibration: {{method: sigmoid, share: 0.2, threshold: best_f1}}
# The metric that picks the best candidate on the held-out window, and that a challenger must
# improve by its gate's `min_improvement` to be promoted (roc_auc, pr_auc, brier, log_loss, ...).
selection_metric: roc_auc

monitor_reference: holdout   # drift against: holdout, train, or rolling (the periods before)
monitor_rolling_periods: 3
monitor_last: 0
monitor_max_rows: 100000

# the scheduled job's policy (make retrain, make propose) and the policies make backtest
# replays over the labelled periods (docs/retraining.md); in `backtest`, label_delay: N also
# replays each policy with a period's labels known N periods after it was served
retraining: {{window: expanding, every: 1, trigger: fail, shadow_periods: 1}}
backtest:
  never: {{every: 0}}
  each-period: {{window: expanding, every: 1}}
  each-period-rolling-3: {{window: 3, every: 1}}
  on-fail: {{window: expanding, trigger: fail}}
  each-period-no-shadow: {{window: expanding, every: 1, shadow_periods: 0}}

mlflow:
  tracking_uri: "sqlite:///{here}/mlruns/mlflow.db"
  artifact_root: "{here}/mlruns/artifacts"
  model_name: {_dump(name)}
serving:
  archive: "{here}/data/requests/{name}"
gates: "{here}/model/gates.{name}.yaml"
baseline: "{here}/model/baseline.{name}.json"
"""


def summary(p: Proposal, project: Path) -> str:
    """What `init` found and proposes, for the person who ran it."""
    s, spec = p.settings, p.admitted.spec
    table = p.manifest["tables"]["data"]
    read = table["read_as"]
    how = (f"{read['format']}" + (f", {read['encoding']}, delimiter {read['delimiter']!r}"
                                  if read["format"] == "csv" else ""))  # fmt: skip
    rows = spec.counts["rows"]
    positives = spec.counts["positive"]
    windows = p.admitted.windows
    batches = windows[windows["window"].str.startswith("batch ")]
    labels = sorted(map(str, p.labels))
    positive = dataset.positive_label_in(p.labels, s.positive_label)
    named = (f"positive label {positive!r}" if s.positive_label is not None else
             f"positive label {labels[-1]!r}, the larger of {labels} (or --positive)")  # fmt: skip
    out = [
        f"{p.source}: {table['rows']:,} rows, {len(table['columns'])} columns (read as {how})",
        f"target {s.target!r}: {positives:,} positive of {rows:,} rows "
        f"({positives / rows:.1%}); {named}",
    ]
    if s.time_column:
        out.append(f"split by {s.time_column!r} in calendar periods {s.period!r} (times in UTC)")
    else:
        out.append(f"no time column: split by row order into {s.row_periods} parts; the rows "
                   "are taken to be in time order")  # fmt: skip
    out.append("windows:")
    for _, w in windows.iloc[:2].iterrows():
        out.append(f"  {w['window']:<9} {w['periods']:<24} {w['rows']:>10,} rows, "
                   f"{w['positive_rate']:.1%} positive")  # fmt: skip
    out.append(f"  batches   {len(batches)} to monitor, {int(batches['rows'].min()):,} to "
               f"{int(batches['rows'].max()):,} rows each")  # fmt: skip
    out.append(f"features: {len(spec.numeric)} numeric, {len(spec.categorical)} categorical")
    dropped = {**{c: p.notes[c] for c in s.drop_columns if c in p.notes}, **spec.dropped_columns}
    for column, why in dropped.items():
        out.append(f"  dropped {column!r}: {why}")
    extra = [v for v in s.missing_values if v not in MISSING_VALUES]
    if extra:
        out.append(f"read as missing as well: {', '.join(map(repr, extra))} (data.missing_values)")
    m = p.gates["metrics"]
    out.append(f"gates (held out: ranks no worse than one guess for every row): roc_auc >= "
               f"{m['roc_auc']['floor']}, pr_auc >= the positive rate of the rows judged, "
               f"brier <= {m['brier']['ceiling']}")  # fmt: skip
    out.append("wrote " + ", ".join(str(f.relative_to(project)) for f in p.written))
    out.append(f"next: make build ENV={p.name}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nbmlops", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser("init", help="a new project for one dataset")
    init.add_argument("name", help="the project's name: env.NAME.yaml, reports/NAME, ...")
    init.add_argument("--source", required=True, help="a CSV or Parquet file in the project")
    init.add_argument("--target", required=True, help="the column to predict (two labels)")
    init.add_argument("--positive", help="the label that means positive (default: the larger)")
    init.add_argument("--time", help="a column of dates to split by (default: row order)")
    init.add_argument("--project", default=".", help="the project folder (default: here)")
    init.add_argument("--force", action="store_true", help="replace the project's files")
    args = parser.parse_args(argv)
    try:
        proposal = init_project(args.project, args.name, args.source, args.target,
                                args.positive, args.time, args.force)  # fmt: skip
    except PipelineError as exc:
        print(f"nbmlops init: {exc}", file=sys.stderr)
        return 2
    print(summary(proposal, Path(args.project).resolve()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
