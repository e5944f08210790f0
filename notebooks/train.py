# %% [markdown]
# # Train one candidate
# The pipeline runs this notebook once per candidate in the grid, in parallel.

# %% tags=["parameters"]
upstream = ["features"]
product = None
model = "logreg"
hyperparams = {}
seed = 0

# %%
import pandas as pd

from nbmlops import models, storage
from nbmlops.features import FeatureSpec

spec = FeatureSpec.from_dict(storage.read_json(upstream["features"]["spec"]))
train = pd.read_parquet(upstream["features"]["train"])
pipeline = models.build_candidate(model, spec, seed, **hyperparams.get(model, {}))
pipeline, seconds = models.fit(pipeline, train, spec)
train_metrics = models.classification_metrics(
    train[spec.target], models.predict_proba(pipeline, train, spec)
)

# %%
storage.write_pickle(product["model"], pipeline)
storage.write_json(
    product["metrics"],
    {
        "model": model,
        "hyperparams": hyperparams.get(model, {}),
        "fit_seconds": seconds,
        "train": train_metrics,
    },
)
pd.Series(train_metrics, name=f"{model} (training window)")
