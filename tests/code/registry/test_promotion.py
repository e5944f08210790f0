"""Promotion and rollback against a real MLflow store: the gates, the evidence, the
project's lock, and alias, history and baseline always naming the same champion."""

import json
from pathlib import Path

import numpy as np
import pytest

from nbmlops import storage
from nbmlops.registry import gates, promotion
from nbmlops.registry.errors import RegistryError
from nbmlops.registry.versions import (
    CHALLENGER,
    CHAMPION,
    alias_version,
    champion_history,
    list_versions,
    version_metrics,
)
from tests.code.registry.conftest import gate_rules

pytestmark = pytest.mark.both_stores


def test_promote_first_challenger_writes_baseline(store, builder, files):
    baseline, gate_file = files
    version = builder.register()
    promoted, result = promotion.promote(store, baseline, gate_rules(gate_file))
    assert promoted == version and result.promotable
    assert alias_version(store, CHAMPION) == version
    content = storage.read_json(baseline)
    assert content["version"] == version
    assert content["metrics"]["roc_auc"] == pytest.approx(
        version_metrics(store, version)["roc_auc"], abs=1e-6
    )


def test_promotion_refused_without_improvement_leaves_everything(store, builder, files):
    baseline, gate_file = files
    builder.register()
    promotion.promote(store, baseline, gate_rules(gate_file))
    before = baseline.read_bytes()
    builder.register(hyperparams={"linear": {"C": 1e-4}})  # a weaker model
    with pytest.raises(gates.GateError, match="v2 is not promoted") as err:
        promotion.promote(store, baseline, gate_rules(gate_file))
    assert "roc_auc" in str(err.value)
    assert alias_version(store, CHAMPION) == "1"
    assert alias_version(store, CHALLENGER) == "2"
    assert baseline.read_bytes() == before


def test_force_then_rollback(store, builder, files):
    baseline, gate_file = files
    builder.register()
    promotion.promote(store, baseline, gate_rules(gate_file))
    first = storage.read_json(baseline)
    builder.register()
    promotion.promote(store, baseline, gate_rules(gate_file), force=True)
    assert champion_history(store) == ["1", "2"]
    assert storage.read_json(baseline)["version"] == "2"
    assert promotion.rollback(store, baseline) == ("2", "1")
    assert alias_version(store, CHAMPION) == "1"
    assert storage.read_json(baseline)["metrics"] == first["metrics"]
    with pytest.raises(RegistryError, match="no previous champion"):
        promotion.rollback(store, baseline)
    assert len(list_versions(store)) == 2  # versions are never deleted


def test_promote_without_challenger_or_twice(store, builder, files):
    baseline, gate_file = files
    with pytest.raises(RegistryError, match="has no challenger"):
        promotion.promote(store, baseline, gate_rules(gate_file))
    builder.register()
    promotion.promote(store, baseline, gate_rules(gate_file))
    with pytest.raises(RegistryError, match="already the champion"):
        promotion.promote(store, baseline, gate_rules(gate_file))


def _env_file(store, files, tmp_path, wait: float = 0) -> Path:
    baseline, gate_file = files
    env = tmp_path / "env.promote.yaml"
    env.write_text(json.dumps({
        "products": str(tmp_path / "products"), "build_lock_wait": wait,
        "mlflow": {"tracking_uri": store.tracking_uri, "artifact_root": store.artifact_root,
                   "model_name": store.model_name},
        "baseline": str(baseline), "gates": str(gate_file), "selection_metric": "roc_auc"}))  # fmt: skip
    return env


def _models_cli(env: Path, *args: str):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "nbmlops.commands.models", "--env", str(env),
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_a_promotion_waits_for_or_stops_at_the_projects_lock(store, builder, files, tmp_path):
    from nbmlops.locking import LOCK_FILE, ProjectLock

    builder.register()
    builder.register()
    env = _env_file(store, files, tmp_path)
    with ProjectLock(tmp_path / "products" / LOCK_FILE, what="build"):
        refused = _models_cli(env, "promote", "--force")
        _, err = refused.communicate(timeout=120)
    assert refused.returncode == 1 and "another build of this project is running" in err
    assert alias_version(store, CHAMPION) is None
    assert not files[0].exists()  # no baseline written


def test_a_promotion_refuses_a_gate_file_the_next_build_would_refuse(store, builder, files,
                                                                     tmp_path):  # fmt: skip
    """`nbmlops-models promote` checks the monitor's rules too, so it never writes a baseline
    beside a gate file the evaluate task stops at."""
    builder.register()
    env = _env_file(store, files, tmp_path)
    good = files[1].read_text()
    files[1].write_text(good + "monitoring: {drift_share: 2}\n")
    refused = _models_cli(env, "promote", "--force")
    _, err = refused.communicate(timeout=120)
    assert refused.returncode == 1
    assert err.strip().splitlines()[0].endswith("monitoring.drift_share must be between 0 and 1, "
                                                "not 2.0")  # fmt: skip
    assert alias_version(store, CHAMPION) is None and not files[0].exists()
    files[1].write_text(good)
    promoted = _models_cli(env, "promote", "--force")
    assert promoted.wait(120) == 0, promoted.communicate()[1]
    assert alias_version(store, CHAMPION) == "1"


def test_two_promotions_at_once_leave_alias_history_and_baseline_agreeing(store, builder, files,
                                                                          tmp_path):  # fmt: skip
    for _ in range(3):
        builder.register()
    env = _env_file(store, files, tmp_path, wait=60)
    both = [_models_cli(env, "promote", version, "--force") for version in ("2", "3")]
    outcomes = [(p.wait(120), p.communicate()[1]) for p in both]
    assert [code for code, _ in outcomes] == [0, 0], outcomes  # one waited for the other
    history = champion_history(store)
    assert sorted(history) == ["2", "3"]
    assert alias_version(store, CHAMPION) == history[-1]
    assert storage.read_json(files[0])["version"] == history[-1]


def test_promotion_follows_the_evidence_on_the_rows_both_models_scored(store, builder, files):
    """A challenger the paired evidence shows worse is refused (with the evidence in the
    message) unless forced; one that wins on the same rows is promoted."""

    from nbmlops.registry import evidence

    baseline, gate_file = files
    for _ in range(3):
        builder.register()
    promotion.promote(store, baseline, gate_rules(gate_file), "1", force=True)
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 3000)
    signal = y + rng.normal(0, 0.8, len(y))
    good, poor = (
        1 / (1 + np.exp(-signal)),
        1 / (1 + np.exp(-(0.3 * signal + rng.normal(size=len(y))))),
    )
    rules = gate_rules(gate_file)
    worse = evidence.compare(y, good, poor, rules, "shadow scoring", ["2024-05"])
    assert worse.worse and not worse.promotable and worse.difference.high < 0
    with pytest.raises(gates.GateError, match="the evidence shows it worse") as refused:
        promotion.promote(store, baseline, gate_rules(gate_file), "2", evidence=worse)
    assert "DeLong, paired" in str(refused.value) and "3,000 rows" in str(refused.value)
    assert alias_version(store, CHAMPION) == "1"
    assert storage.read_json(baseline)["version"] == "1"  # nothing moved
    promotion.promote(store, baseline, gate_rules(gate_file), "2", force=True, evidence=worse)
    assert alias_version(store, CHAMPION) == "2"
    better = evidence.compare(y, poor, good, rules, "shadow scoring", ["2024-05"])
    assert better.promotable and better.difference.low > 0
    held_out = gates.GateResult(better.gate.table, True, True)  # the build's own gate
    promotion.promote(
        store, baseline, gate_rules(gate_file), "3", evidence=better, held_out=held_out
    )
    assert champion_history(store) == ["1", "2", "3"]
    assert storage.read_json(baseline)["version"] == "3"
    # evidence from two sources: one showing it worse is enough to refuse
    builder.register()
    with pytest.raises(gates.GateError, match="the evidence shows it worse"):
        promotion.promote(store, baseline, gate_rules(gate_file), "4", evidence=[better, worse],
                          held_out=held_out)  # fmt: skip
    none = evidence.compare(y[:10] * 0, good[:10], poor[:10], rules, "shadow", [])
    assert none.gate is None and "not enough labelled rows" in str(none)
