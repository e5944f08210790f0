# %% [markdown]
# # Evaluate
# Compare the candidates on the held-out window, pick the best, check the promotion gates
# against the committed baseline, log every candidate to MLflow and register the best as
# the new `challenger`. A gate failure stops the build here; the champion is never touched.

# %% tags=["parameters"]
upstream = ["ingest", "features", "train-*"]
product = None
mlflow = {}
candidates = {"logreg": {"estimator": "sklearn.linear_model.LogisticRegression"}}
resources_ = {"gates": "model/gates.yaml"}
selection_metric = "roc_auc"  # the metric that picks the best candidate (env file)
baseline_file = "model/baseline.json"
project = "."
lock_file = "requirements.lock"
assets = None  # the project's folder of scripts and styles its pages share (None: beside them)

# %%
import pandas as pd

from nbmlops import html, session, storage
from nbmlops.monitoring import rules
from nbmlops.registry import gates
from nbmlops.registry.runs import environment_tags
from nbmlops.registry.store import Store
from nbmlops.settings import candidate_grid
from nbmlops.spec import FeatureSpec
from nbmlops.training import evaluation

product = session.outputs(product, "evaluate")  # a scratch folder when run outside a build
declared = candidate_grid(candidates)
pd.DataFrame(declared).set_index("name")

# %%
spec = FeatureSpec.read(upstream["features"]["spec"])
holdout = pd.read_parquet(upstream["ingest"]["holdout"])
gate_spec = rules.gate_file(resources_["gates"], selection_metric)
result = evaluation.evaluate_candidates(
    upstream["train-*"], holdout, spec, selection_metric, [c["name"] for c in declared]
)
result.table

# %%
evaluation.plot_candidates(result, holdout, spec)

# %%
store = session.registry(Store.from_params(mlflow), product)  # scratch outside a build
baseline, compared_with, against = evaluation.baseline_on_holdout(
    store, baseline_file, holdout, spec
)
gate = gates.check(result.best_metrics, baseline, gate_spec)
print(f"best: {result.best}; gates {'pass' if gate.passed else 'FAIL'} against {compared_with}; "
      f"promotable: {gate.promotable}")  # fmt: skip
gate.table

# %%
manifest = storage.read_json(upstream["ingest"]["manifest"])
context = environment_tags(project, lock_file) | evaluation.data_tags(manifest, spec)
decided = evaluation.comparison(result, gate, baseline, compared_with, against)
with evaluation.kept_when_stopped(decided, product["metrics"]):  # for the CI comment
    registered = evaluation.track_and_register(result, holdout, spec, gate, store, context)
storage.write_text(
    product["performance"],  # evidently's scripts in the shared folder
    html.shared(registered.performance_page, product["performance"], assets),
)
storage.write_json(product["best"], registered.best)
storage.write_json(product["metrics"], decided | registered.metrics)
best = registered.best
how = "an identical model file, already registered" if best["matched_existing_version"] else "new"
print(f"challenger: v{best['version']} ({how}); MLflow took {best['tracking_seconds']} s")
best
