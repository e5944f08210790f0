# %% [markdown]
# # Features
# Join the raw tables, build features with no leakage, and split by time: a training window,
# a held-out window, then one batch per later period for monitoring, and one batch per file of
# `current_batches` (new rows in the models' input columns).

# %% tags=["parameters"]
upstream = ["ingest", "validate"]
product = None
data = {"target": "late"}
current_batches = None
root = "."
data_within_project = True

# %%
from nbmlops import features, ingest, storage
from nbmlops.settings import DataSettings

settings = DataSettings.from_params(**data)
manifest = storage.read_json(upstream["ingest"]["manifest"])
dataset, spec = features.build_dataset(ingest.load_snapshot(manifest), manifest, settings)
split = features.time_split(dataset, spec, settings, manifest["source"])
current = features.current_files(current_batches, root, data_within_project)
split.batches = features.with_current_batches(split.batches, current, spec, settings)
spec.counts

# %%
# NBVAL_CHECK_OUTPUT
storage.write_parquet(product["train"], split.train)
storage.write_parquet(product["holdout"], split.holdout)
storage.write_parquet(product["batches"], split.batches)
spec.windows = split.windows()
storage.write_json(product["spec"], spec.to_dict())
split.summary(spec.target)
