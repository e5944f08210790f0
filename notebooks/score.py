# %% [markdown]
# # Score batches: champion answers, challenger in shadow
# Each batch (and the held-out reference) is scored by the champion from the registry;
# the challenger scores the same rows beside it. If the champion cannot be loaded or fails,
# the previous champion answers and the output says so. Scored rows are archived immutably.

# %% tags=["parameters"]
upstream = ["ingest", "features", "evaluate"]
product = None
mlflow = {}
archive_dir = "data/scored"
champion_record = "model/baseline.json"
monitor_reference = "holdout"

# %%
import pandas as pd

from nbmlops import storage
from nbmlops.monitoring import scoring
from nbmlops.registry.store import Store
from nbmlops.spec import BATCH, FeatureSpec

spec = FeatureSpec.read(upstream["features"]["spec"])
best = storage.read_json(upstream["evaluate"]["best"])
batches = pd.read_parquet(upstream["ingest"]["batches"])
windows = {scoring.REFERENCE: pd.read_parquet(upstream["ingest"]["holdout"])}
if monitor_reference != "holdout":  # the monitor compares batches with training rows too
    windows[scoring.TRAINING] = pd.read_parquet(upstream["ingest"]["train"])
windows |= dict(iter(batches.groupby(BATCH, sort=False)))
store = Store.from_params(mlflow).pinned_by(champion_record)
print(scoring.champion_record_note(store, champion_record))
result = scoring.score(store, best["version"], windows, spec)
print("\n".join(result.events) or "no fallback needed")

# %%
summary = scoring.summarize(result.scores, spec)
archived = scoring.archive(scoring.scored_rows(windows, result.scores, spec), archive_dir)
storage.write_parquet(product["scores"], result.scores)
storage.write_json(
    product["shadow"],
    {"champion": result.champion, "challenger": result.challenger, "events": result.events,
     "archive": str(archived), "batches": summary.to_dict(orient="records")},
)  # fmt: skip
summary
