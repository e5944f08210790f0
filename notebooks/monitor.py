# %% [markdown]
# # Monitor
# Compare each later batch with the held-out window: data drift, prediction drift and, where
# labels exist, performance of the served model, with the shadow challenger beside it.

# %% tags=["parameters"]
upstream = ["features", "score"]
product = None
drift_share = 0.5
min_roc_auc = 0.6
monitor_last = 0
max_rows = 100_000

# %%
import pandas as pd

from nbmlops import evaluation, features, monitoring, storage
from nbmlops.features import FeatureSpec

spec = FeatureSpec.from_dict(storage.read_json(upstream["features"]["spec"]))
summary = evaluation.monitor_batches(
    scores=pd.read_parquet(upstream["score"]["scores"]),
    train=pd.read_parquet(upstream["features"]["train"]),
    holdout=pd.read_parquet(upstream["features"]["holdout"]),
    batches=features.latest_batches(pd.read_parquet(upstream["features"]["batches"]), monitor_last),
    spec=spec,
    product=product,
    drift_share=drift_share,
    min_roc_auc=min_roc_auc,
    max_rows=max_rows,
)
summary

# %%
monitoring.plot_over_batches(summary, drift_share)
