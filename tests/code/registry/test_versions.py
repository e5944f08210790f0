"""Aliases and versions: the champion history is written only if it is still what was read."""

import pytest

from nbmlops.registry import promotion
from nbmlops.registry.errors import RegistryError
from nbmlops.registry.versions import CHAMPION, alias_version, champion_history, set_champion
from tests.code.registry.conftest import gate_rules

pytestmark = pytest.mark.both_stores


def test_a_champion_history_changed_meanwhile_is_not_overwritten(store, builder, files):
    baseline, gate_file = files
    builder.register()
    builder.register()
    read_before = champion_history(store)
    promotion.promote(store, baseline, gate_rules(gate_file), "1", force=True)  # lands in between
    with pytest.raises(RegistryError, match="the champion history changed while this ran"):
        set_champion(store, "2", read_before + ["2"], expected=read_before)
    assert champion_history(store) == ["1"]
    assert alias_version(store, CHAMPION) == "1"
