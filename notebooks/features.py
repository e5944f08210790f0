# %% [markdown]
# # Features
# The columns the models see. Your derivation (the env's `features` file, e.g.
# `features/flights.py`) turns each row's input columns into the model's columns; it runs inside
# every fitted model, so the service takes the input columns only. Below: the feature table
# (kind, input or derived, missing share on the training window), a few training rows with
# their derived columns, the columns dropped and why, the rows on the way, and the windows of
# the time split. Written as `features.json`, which training, monitoring and the service read.

# %% tags=["parameters"]
upstream = ["ingest"]
product = None

# %%
import pandas as pd

from nbmlops import derived, session
from nbmlops.data import admission

product = session.outputs(product, "features")  # a scratch folder when run outside a build

admitted = admission.AdmissionRecord.read(upstream["ingest"]["admission"])
spec = admitted.spec
train = pd.read_parquet(upstream["ingest"]["train"])
print(f"{len(spec.columns)} input columns -> {len(spec.model_columns)} model columns "
      f"({spec.derived.get('file')}: {spec.derived.get('function')})")  # fmt: skip
derived.feature_table(spec, train)

# %%
derived.sample_rows(spec, train)

# %%
pd.Series(spec.dropped_columns, name="why dropped", dtype=object)

# %%
spec.counts

# %%
# NBVAL_CHECK_OUTPUT
spec.write(product["spec"])
admitted.windows
