# %% [markdown]
# # Score batches: champion answers, challenger in shadow
# Each batch (and the held-out reference) is scored by the champion from the registry;
# the challenger scores the same rows beside it. If the champion cannot be loaded or fails,
# the previous champion answers and the output says so. Scored rows are kept immutably.
# Files are read and written in chunks, so a batch of any size takes the memory of one chunk.

# %% tags=["parameters"]
upstream = ["ingest", "features", "evaluate"]
product = None
mlflow = {}
scored_store = "data/scored"
champion_record = "model/baseline.json"
monitor_reference = "holdout"

# %%
from nbmlops import session, storage
from nbmlops.monitoring import scoring
from nbmlops.registry.store import Store
from nbmlops.spec import REFERENCE, TRAINING, FeatureSpec

product = session.outputs(product, "score")  # a scratch folder when run outside a build
scored_store = session.folder(scored_store, product)
spec = FeatureSpec.read(upstream["features"]["spec"])
best = storage.read_json(upstream["evaluate"]["best"])
sources = [(REFERENCE, upstream["ingest"]["holdout"])]
if monitor_reference != "holdout":  # the monitor compares batches with training rows too
    sources.append((TRAINING, upstream["ingest"]["train"]))
sources.append((None, upstream["ingest"]["batches"]))  # one window per batch
store = Store.from_params(mlflow).pinned_by(champion_record)
print(scoring.champion_record_note(store, champion_record))
result = scoring.score_files(
    store, best["version"], sources, spec, product["scores"], scored_store
)  # fmt: skip
print("\n".join(result.events) or "no fallback needed")

# %%
storage.write_json(
    product["shadow"],
    {"champion": result.champion, "challenger": result.challenger, "events": result.events,
     "scored_file": str(result.scored_file), "batches": result.summary.to_dict(orient="records")},
)  # fmt: skip
result.summary
