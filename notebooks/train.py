# %% [markdown]
# # Train one candidate
# The pipeline runs this notebook once per candidate in the grid, in parallel.

# %% tags=["parameters"]
upstream = ["ingest", "features"]
product = None
model = "logreg"
hyperparams = {}
seed = 0

# %%
import pandas as pd

from nbmlops import metrics
from nbmlops.spec import FeatureSpec
from nbmlops.training import candidates

spec = FeatureSpec.read(upstream["features"]["spec"])
train = pd.read_parquet(upstream["ingest"]["train"])
pipeline = candidates.build_candidate(model, spec, seed, **hyperparams.get(model, {}))
pipeline, seconds = candidates.fit(pipeline, train, spec)
train_metrics = metrics.classification_metrics(
    train[spec.target], metrics.predict_proba(pipeline, train, spec)
)

# %%
record = {
    "model": model,
    "hyperparams": hyperparams.get(model, {}),
    "fit_seconds": seconds,
    "train": train_metrics,
}
candidates.save(pipeline, record, product["model"], product["metrics"])
pd.Series(train_metrics, name=f"{model} (training window)")
