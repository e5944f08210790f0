# %% [markdown]
# # Validate
# Check every raw table against the data contract. Any error stops the build here, with a
# message naming the file, the column and the problem.

# %% tags=["parameters"]
upstream = ["ingest"]
product = None
contract = "contracts/nycflights13.yaml"
data = {"target": "late"}

# %%
from nbmlops import contract as dc
from nbmlops import html, ingest, storage

manifest = storage.read_json(upstream["ingest"]["manifest"])
tables = ingest.load_snapshot(manifest)
result = dc.validate_snapshot(
    manifest, tables, dc.load_contract(contract), data["target"], data.get("positive_label")
)
result.raise_if_failed()

# %%
storage.write_text(
    product["quality"], html.page("Data quality", dc.quality_page_body(result, manifest))
)
storage.write_json(
    product["checks"], {"ok": result.ok, "warnings": [str(w) for w in result.warnings]}
)
result.summary()
