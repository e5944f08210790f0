# %% [markdown]
# # Data quality
# What the data contract found when ingest checked every raw table: the verdict, each problem
# with the file, the column and the problem, and a row per column. Errors stopped the build in
# ingest; warnings are listed here.

# %% tags=["parameters"]
upstream = ["ingest"]
product = None

# %%
from nbmlops import html, session, storage
from nbmlops.data import admission
from nbmlops.data import contract as dc

product = session.outputs(product, "quality")  # a scratch folder when run outside a build

manifest = storage.read_json(upstream["ingest"]["manifest"])
checks = admission.AdmissionRecord.read(upstream["ingest"]["admission"]).checks

# %%
storage.write_text(
    product["page"], html.page("Data quality", dc.quality_page_body(checks, manifest))
)
storage.write_json(
    product["checks"], {"ok": checks.ok, "warnings": [str(w) for w in checks.warnings]}
)
checks.summary()
