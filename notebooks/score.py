# %% [markdown]
# # Score batches: champion answers, challenger in shadow
# Each batch (and the held-out reference) is scored by the champion from the registry;
# the challenger scores the same rows beside it. If the champion cannot be loaded or fails,
# the previous champion answers and the output says so. Scored rows are archived immutably.

# %% tags=["parameters"]
upstream = ["features", "evaluate"]
product = None
mlflow = {}
archive_dir = "data/scored"

# %%
import pandas as pd

from nbmlops import registry, shadow, storage
from nbmlops.features import BATCH, FeatureSpec

spec = FeatureSpec.from_dict(storage.read_json(upstream["features"]["spec"]))
best = storage.read_json(upstream["evaluate"]["best"])
batches = pd.read_parquet(upstream["features"]["batches"])
windows = {shadow.REFERENCE: pd.read_parquet(upstream["features"]["holdout"])}
windows |= dict(iter(batches.groupby(BATCH, sort=False)))
result = shadow.score(registry.Store.from_params(**mlflow), best["version"], windows, spec)
print("\n".join(result.events) or "no fallback needed")

# %%
summary = shadow.summarize(result.scores, spec)
archived = shadow.archive(shadow.scored_rows(windows, result.scores, spec), archive_dir)
storage.write_parquet(product["scores"], result.scores)
storage.write_json(
    product["shadow"],
    {"champion": result.champion, "challenger": result.challenger, "events": result.events,
     "archive": str(archived), "batches": summary.to_dict(orient="records")},
)  # fmt: skip
summary
