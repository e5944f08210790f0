"""A model's outputs and how they are judged: probabilities, decisions, the metrics every
report and gate uses. Any fitted scikit-learn classifier of the registry will do."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from ..spec import THRESHOLD, FeatureSpec
from ..storage import ROW_GROUP_ROWS

#: Column names of a scored frame, as evidently's reports read them.
PROBA = "prediction_proba"
PRED = "prediction"
#: Rows a model scores in one call: its transformed features for this many rows is the most
#: memory scoring takes (a one-hot design of 5M rows would take gigabytes), whatever the batch.
#: Log loss clips probabilities to this distance from 0 and 1.
EPSILON = 1e-7
CHUNK_ROWS = ROW_GROUP_ROWS  # a Parquet row group of the package's files


def predict_proba(model, data: pd.DataFrame, spec: FeatureSpec,
                  chunk_rows: int = CHUNK_ROWS) -> np.ndarray:  # fmt: skip
    """The positive class's probability for every row, scored `chunk_rows` rows at a time
    (each row's probability does not depend on the others)."""
    if len(data) <= chunk_rows:
        return model.predict_proba(data[spec.columns])[:, 1]
    out = np.empty(len(data), dtype=np.float64)
    for start in range(0, len(data), chunk_rows):
        rows = data.iloc[start : start + chunk_rows]
        out[start : start + len(rows)] = model.predict_proba(rows[spec.columns])[:, 1]
    return out


def classification_metrics(y_true, proba, threshold=THRESHOLD) -> dict[str, float]:
    """The metrics every report and gate uses, by name; decisions at `threshold` (the
    model's: one, or one per row)."""
    y_true = np.asarray(y_true)
    proba = np.asarray(proba)
    pred = (proba >= np.asarray(threshold, dtype=np.float64)).astype(int)
    two_classes = len(np.unique(y_true)) == 2
    return {
        "roc_auc": float(skm.roc_auc_score(y_true, proba)) if two_classes else float("nan"),
        "pr_auc": float(skm.average_precision_score(y_true, proba))
        if two_classes
        else float("nan"),
        "f1": float(skm.f1_score(y_true, pred, zero_division=0)),
        "precision": float(skm.precision_score(y_true, pred, zero_division=0)),
        "recall": float(skm.recall_score(y_true, pred, zero_division=0)),
        "accuracy": float(skm.accuracy_score(y_true, pred)),
        "brier": float(skm.brier_score_loss(y_true, proba)),
        "log_loss": float(
            skm.log_loss(y_true, np.clip(proba, EPSILON, 1 - EPSILON), labels=[0, 1])
        ),
        "positive_rate": float(y_true.mean()),
        "predicted_positive_rate": float(pred.mean()),
        "rows": int(len(y_true)),
    }


def scored_frame(data: pd.DataFrame, spec: FeatureSpec, proba: np.ndarray,
                 threshold=THRESHOLD) -> pd.DataFrame:  # fmt: skip
    """Features, target and the model's outputs (its decision at its threshold: one, or one
    per row), in the column names the reports use."""
    out = data[spec.columns + [spec.target]].copy()
    out[PROBA] = proba
    out[PRED] = (np.asarray(proba) >= np.asarray(threshold, dtype=np.float64)).astype(int)
    return out
