# %% [markdown]
# # Monitor
# Compare each later batch with its reference (the held-out window by default): data drift,
# prediction drift and, where labels exist, performance and calibration of the served model
# against its held-out figures, with the shadow challenger beside it. What fails a batch and
# what only warns comes from the gate file's `monitoring` block.

# %% tags=["parameters"]
upstream = ["ingest", "features", "score"]
product = None
resources_ = {"gates": "model/gates.yaml"}
monitor_reference = "holdout"
rolling_periods = 3
monitor_last = 0
max_rows = 100_000
assets = None  # the project's folder of scripts and styles its pages share (None: beside them)

# %%
from pathlib import Path

import pandas as pd

from nbmlops import session, storage
from nbmlops.monitoring import drift, monitor, verdict
from nbmlops.spec import FeatureSpec

product = session.outputs(product, "monitor")  # a scratch folder when run outside a build
rules = verdict.MonitorRules.from_file(resources_["gates"])
folder = Path(product["batches"])
reports = storage.staging_dir(folder)
result = monitor.monitor_batches(
    scores=upstream["score"]["scores"],  # read in chunks, as is the batch file
    train=pd.read_parquet(upstream["ingest"]["train"]),
    holdout=pd.read_parquet(upstream["ingest"]["holdout"]),
    batches=upstream["ingest"]["batches"],
    shadow=storage.read_json(upstream["score"]["shadow"])["batches"],
    spec=FeatureSpec.read(upstream["features"]["spec"]).as_seen_by_model(),  # what the model sees
    report_dir=reports,
    linked_as=folder.name,
    rules=rules,
    reference=monitor_reference,
    rolling_periods=rolling_periods,
    max_rows=max_rows,
    last=monitor_last,
    assets=assets,
)
storage.replace_dir(reports, folder)
storage.write_json(product["tests"], result.tests)
storage.write_text(product["summary"], monitor.monitoring_page(result))
result.summary

# %%
drift.plot_over_batches(result.summary, rules.drift_share)

# %%
monitor.calibration_plot(result.rows, result.tests["held_out"])
