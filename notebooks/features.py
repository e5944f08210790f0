# %% [markdown]
# # Features
# The feature set ingest admitted: the columns the models see (numeric and categorical), the
# columns dropped and why, the rows on the way, and the windows of the time split: training,
# held-out, then one batch per later period and per file of `current_batches`. Written as
# `features.json`, which training, monitoring and the scoring service read.

# %% tags=["parameters"]
upstream = ["ingest", "validate"]
product = None

# %%
from nbmlops import session
from nbmlops.data import admission

product = session.outputs(product, "features")  # a scratch folder when run outside a build

admitted = admission.AdmissionRecord.read(upstream["ingest"]["admission"])
admitted.spec.counts

# %%
# NBVAL_CHECK_OUTPUT
admitted.spec.write(product["spec"])
admitted.windows
