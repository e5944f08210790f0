# %% [markdown]
# # Train one candidate
# The pipeline runs this notebook once per candidate of the env file's `candidates` block, in
# parallel (`train-NAME`). A candidate is any estimator with the scikit-learn API, named by its
# dotted path with its parameters; the template puts the column preparation before it, chosen
# by the estimator's kind. Change a candidate in the env file and only its task runs again.

# %% tags=["parameters"]
upstream = ["ingest", "features"]
product = None
candidate = {"name": "logreg", "estimator": "sklearn.linear_model.LogisticRegression",
             "params": {"C": 1.0, "max_iter": 1000}}  # fmt: skip
calibration = {"method": "sigmoid", "share": 0.2, "threshold": "best_f1"}
seed = 0

# %% [markdown]
# The candidate as declared, and the pipeline built from it: preparation, then the estimator.

# %%
import pandas as pd

from nbmlops import session
from nbmlops.calibration import threshold_of
from nbmlops.metrics.scores import classification_metrics, predict_proba
from nbmlops.settings import CalibrationSettings
from nbmlops.spec import FeatureSpec
from nbmlops.training import candidates

product = session.outputs(product, f"train-{candidate['name']}")  # scratch outside a build

spec = FeatureSpec.read(upstream["features"]["spec"])
train = pd.read_parquet(upstream["ingest"]["train"])
pipeline = candidates.build(candidate, spec, seed)
pipeline

# %% [markdown]
# Fitted on the older part of the training window; the newest part (`calibration.share`, in
# time order) fits the map from the estimator's probability to the observed rate and chooses
# the decision threshold (`calibration` in the env file). Below: the mean probability against
# the observed rate and the Brier score on that slice, before and after the map.

# %%
settings = CalibrationSettings.from_params(calibration)
pipeline, seconds, calibrated = candidates.fit_calibrated(pipeline, train, spec, settings)
train_metrics = classification_metrics(
    train[spec.target], predict_proba(pipeline, train, spec), threshold_of(pipeline)
)
record = candidates.record(candidate, seconds, train_metrics, calibrated)
candidates.save(pipeline, record, product["model"], product["metrics"])
pd.Series(calibrated, name=f"{candidate['name']}: calibration").drop("map", errors="ignore")

# %%
pd.Series(train_metrics, name=f"{candidate['name']} (training window)")

# %% [markdown]
# Which columns the fitted model leans on: the fall in ROC AUC on the held-out window when one
# column's values are shuffled (permutation importance, on at most 5,000 rows).

# %%
holdout = pd.read_parquet(upstream["ingest"]["holdout"])
candidates.importances(pipeline, holdout, spec, seed).plot.barh(
    x="feature", y="importance", xerr="spread", legend=False, figsize=(6, 5),
    title=f"{candidate['name']}: permutation importance (ROC AUC)",
).invert_yaxis()  # fmt: skip
