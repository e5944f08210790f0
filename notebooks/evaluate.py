# %% [markdown]
# # Evaluate
# Compare the candidates on the held-out window, pick the best, and write its evidently
# classification report.

# %% tags=["parameters"]
upstream = ["features", "train-*"]
product = None
primary_metric = "roc_auc"

# %%
import pandas as pd

from nbmlops import evaluation, storage
from nbmlops.features import FeatureSpec

spec = FeatureSpec.from_dict(storage.read_json(upstream["features"]["spec"]))
holdout = pd.read_parquet(upstream["features"]["holdout"])
result = evaluation.evaluate_candidates(upstream["train-*"], holdout, spec, primary_metric)
result.table

# %%
evaluation.plot_candidates(result, holdout, spec)

# %%
evaluation.write_results(result, holdout, spec, product)
print(f"best: {result.best} ({primary_metric} {result.table.iloc[0][primary_metric]:.4f})")
