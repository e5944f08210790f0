"""`make live`: the scoring service's request archive joined to the labels sent to
`POST /feedback`; each model's live performance per window, and each shadow against the
champion on the same records, as a page and a JSON file.

    python -m nbmlops.commands.live --env env.yaml [--period D] [--out FOLDER]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from .. import storage
from ..errors import PipelineError
from ..layout import LIVE_PAGES, Layout
from ..monitoring.live import live_page, read_live
from ..settings import ServingSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="env.yaml", help="the env file (default: env.yaml)")
    parser.add_argument("--period", default="D", help="window of answer time (default: D, a day)")
    parser.add_argument("--out", help="default: the env's reports folder / live")
    args = parser.parse_args(argv)
    try:
        layout = Layout.from_env(args.env)
        serving = ServingSettings.from_params(layout.env.get("serving"), args.env)
        folder = layout.env_file.resolve().parent / serving.archive
        live = read_live(folder, args.period, serving.experiment)
    except PipelineError as exc:
        print(f"live: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else layout.reports / LIVE_PAGES
    found = {"archive": str(folder), "period": args.period, "counts": live.counts,
             "models": live.models.to_dict(orient="records"),
             "paired": live.paired.to_dict(orient="records"),
             "experiments": live.experiments.to_dict(orient="records")}  # fmt: skip
    storage.write_json(out / "live.json", found)
    storage.write_text(out / "index.html", live_page(live))
    print(", ".join(f"{k} {v:,}" for k, v in live.counts.items()))
    if not live.models.empty:
        shown = live.models[live.models["window"] == "all"]
        print(shown[["model", "rows", "roc_auc", "roc_auc_low", "roc_auc_high"]].round(4)
              .to_string(index=False))  # fmt: skip
    for e in live.experiments.to_dict(orient="records"):
        needed = e["labels_needed"]
        more = f", about {int(needed):,} more labels" if pd.notna(needed) and needed else ""
        print(
            f"experiment: canary {e['canary']} against champion {e['champion']}: "
            f"{e['labels_canary']:,} + {e['labels_champion']:,} labels, {e['decision']}{more}"
        )
    print(f"wrote {out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
