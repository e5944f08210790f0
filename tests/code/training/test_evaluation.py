"""The evaluate task refuses a candidate whose model file changed after training."""

import pickle

import pytest
from sklearn.dummy import DummyClassifier

from nbmlops.registry.errors import IntegrityError
from nbmlops.training import candidates, evaluation
from tests import helpers
from tests.code.registry.conftest import SPEC, make_data


def test_a_candidate_file_changed_after_training_is_refused(tmp_path):
    pipeline, _ = candidates.fit(helpers.model("linear", SPEC), make_data(300, 1), SPEC)
    model_file, record = tmp_path / "linear.pkl", tmp_path / "linear.json"
    candidates.save(pipeline, {"model": "linear", "hyperparams": {}}, model_file, record)
    trained = {"train-linear": {"model": str(model_file), "metrics": str(record)}}
    holdout = make_data(200, 2)
    assert evaluation.evaluate_candidates(trained, holdout, SPEC, "roc_auc").best == "linear"
    model_file.write_bytes(pickle.dumps(DummyClassifier().fit(holdout[SPEC.columns], holdout["y"])))
    with pytest.raises(IntegrityError, match=r"linear.pkl: sha256 .* its metrics file records"):
        evaluation.evaluate_candidates(trained, holdout, SPEC, "roc_auc")
