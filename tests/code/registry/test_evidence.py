"""The window a version was held out on, found wherever it was recorded."""

import pytest

from nbmlops import storage
from nbmlops.registry import promotion
from nbmlops.registry.versions import version_details
from nbmlops.training import evaluation
from tests.code.registry.conftest import SPEC, gate_rules, make_data

pytestmark = pytest.mark.both_stores


@pytest.mark.embedded_only
def test_a_window_held_out_on_the_run_alone_is_found_by_every_reader(store, builder, files,
                                                                     tmp_path, monkeypatch):  # fmt: skip
    """A version whose held-out window is only on its run's tags (registered before versions
    carried it) is held out there for the shadow evidence's window, the evaluate task's
    champion on these rows and `make retrain`'s clock alike."""
    from types import SimpleNamespace

    from nbmlops.commands import retrain
    from nbmlops.registry import evidence
    from nbmlops.settings import RetrainPolicy
    from nbmlops.spec import PERIOD

    baseline, gate_file = files
    version = builder.register()
    client = store.client()
    client.delete_model_version_tag(store.model_name, version, evidence.HOLDOUT_TAG)
    client.set_tag(version_details(store, version)["run_id"], evidence.HOLDOUT_TAG,
                   "2024-03")  # fmt: skip
    promotion.promote(store, baseline, gate_rules(gate_file))
    details = version_details(store, version)
    assert evidence.HOLDOUT_TAG not in details["tags"]
    assert evidence.held_out_window(details) == "2024-03"  # lastbuild.last_build_evidence's windows
    holdout = make_data(100, 4).assign(**{PERIOD: "2024-03"})
    _, why, _ = evaluation.baseline_on_holdout(store, baseline, holdout, SPEC)
    assert why == f"v{version}, the champion, as committed: held out on these periods"
    storage.write_json(tmp_path / "tests.json", {"batches": []})
    layout = SimpleNamespace(product=lambda task, key: tmp_path / "tests.json")
    monkeypatch.setattr(retrain, "labelled_periods", lambda _: ["2024-03", "2024-04", "2024-05"])
    due = retrain.is_due(layout, store, RetrainPolicy(every=1))
    assert due.due and "was held out on 2024-03" in str(due) and "1 labelled period" in str(due)
