"""`make backtest`: replay the retraining policies of the env file's `backtest` block over the
last build's labelled periods, and write the backtest's page and JSON file.

    python -m nbmlops.commands.backtest --env env.yaml [--policies never,on-fail] [--workers 2]
        [--label-delay N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from .. import storage
from ..errors import ConfigError, PipelineError
from ..layout import BACKTEST_PAGES, Layout
from ..registry import gates
from ..settings import (
    CalibrationSettings,
    DataSettings,
    backtest_label_delay,
    backtest_policies,
)
from ..spec import FeatureSpec
from ..training import replay
from ..training.trainer import Periods, Trainer, default_workers


def prepare(layout: Layout, workers: int) -> tuple[replay.Backtest, list[str]]:
    """The backtest of the build's data, candidates and gates that the env file names."""
    env = layout.env
    inputs = [layout.product("ingest", k) for k in ("train", "holdout", "batches")]
    spec_file = layout.product("features", "spec")
    missing = [str(p) for p in [*inputs, spec_file] if not p.is_file()]
    if missing:
        raise ConfigError(f"no data of a build: {', '.join(missing)} missing; run "
                          f"`make build` with {layout.env_file.name} first")  # fmt: skip
    spec = FeatureSpec.read(spec_file)
    train, holdout, batches = (pd.read_parquet(p) for p in inputs)
    periods, skipped = Periods.from_windows(train, holdout, batches, spec)
    data = DataSettings.from_params(env["data"], layout.env_file.name)
    gate_spec = gates.of_env(env)
    trainer = Trainer(
        periods, spec, layout.candidates, int(env["seed"]), data.holdout_periods,
        gate_spec["selection_metric"], workers,
        CalibrationSettings.from_params(env.get("calibration"), layout.env_file.name),
    )  # fmt: skip
    bt = replay.Backtest(periods, spec, trainer, gate_spec, data.reference_periods,
                           int(env.get("monitor_max_rows") or 0))  # fmt: skip
    return bt, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="env.yaml", help="the env file (default: env.yaml)")
    parser.add_argument("--policies", help="comma-separated names (default: every policy)")
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="processes that train candidates at once")  # fmt: skip
    parser.add_argument("--label-delay", type=int, default=None,
                        help="also replay every policy with each period's labels known N "
                        "periods later (default: the backtest block's label_delay; 0: at once "
                        "only)")  # fmt: skip
    parser.add_argument("--out", help="folder for index.html and backtest.json "
                        "(default: the env's reports folder / backtest)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        layout = Layout.from_env(args.env)
        policies = backtest_policies(layout.env.get("backtest"), f"{args.env}")
        if args.label_delay is None:
            delay = backtest_label_delay(layout.env["backtest"], args.env)
        else:
            delay = backtest_label_delay({"label_delay": args.label_delay}, "--label-delay")
        if args.policies:
            wanted = args.policies.split(",")
            unknown = sorted(set(wanted) - set(policies))
            if unknown:
                raise ConfigError(f"{args.env}: no backtest policy {unknown}; "
                                  f"known: {sorted(policies)}")  # fmt: skip
            policies = {n: policies[n] for n in wanted}
        bt, skipped = prepare(layout, args.workers)
        try:
            result = replay.run(bt, policies, label_delay=delay)
        finally:
            bt.trainer.close()
    except PipelineError as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return 2
    result.skipped = skipped
    from ..reports.backtestpage import backtest_page

    out = Path(args.out) if args.out else layout.reports / BACKTEST_PAGES
    storage.write_json(out / "backtest.json", result.to_json())
    storage.write_text(out / "index.html", backtest_page(result))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(result.summary().drop(columns=["described"]).round(4).to_string(index=False))
        if delay:
            print(f"what labels {delay} period{'s' if delay != 1 else ''} late cost each policy "
                  "(late minus at once):")  # fmt: skip
            cost = result.delay_cost()
            print(cost[["policy", *[c for c in cost if c.endswith("_change")]]]
                  .round(4).to_string(index=False))  # fmt: skip
    print(f"backtest: {result.seconds['total']:.0f} s ({result.seconds['fits']} fits, "
          f"{result.seconds['training']:.0f} s waiting for them); "
          f"wrote {out / 'index.html'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
