# %% [markdown]
# # Monitor
# Compare each later batch with the held-out window: data drift, prediction drift and, where
# labels exist, performance of the served model, with the shadow challenger beside it.

# %% tags=["parameters"]
upstream = ["ingest", "features", "score"]
product = None
drift_share = 0.5
min_roc_auc = 0.6
monitor_last = 0
max_rows = 100_000

# %%
from pathlib import Path

import pandas as pd

from nbmlops import storage
from nbmlops.monitoring import drift, monitor
from nbmlops.spec import FeatureSpec

folder = Path(product["batches"])
reports = storage.staging_dir(folder)
result = monitor.monitor_batches(
    scores=pd.read_parquet(upstream["score"]["scores"]),
    train=pd.read_parquet(upstream["ingest"]["train"]),
    holdout=pd.read_parquet(upstream["ingest"]["holdout"]),
    batches=monitor.latest_batches(pd.read_parquet(upstream["ingest"]["batches"]), monitor_last),
    spec=FeatureSpec.read(upstream["features"]["spec"]),
    report_dir=reports,
    linked_as=folder.name,
    drift_share=drift_share,
    min_roc_auc=min_roc_auc,
    max_rows=max_rows,
)
storage.replace_dir(reports, folder)
storage.write_json(product["tests"], result.tests)
storage.write_text(product["summary"], monitor.monitoring_page(result, drift_share))
result.summary

# %%
drift.plot_over_batches(result.summary, drift_share)
