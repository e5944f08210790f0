"""Model cards for every version of a real MLflow store."""

import re

import pytest

from nbmlops.registry import promotion
from nbmlops.registry.versions import version_details
from tests.code.registry.conftest import gate_rules

pytestmark = pytest.mark.both_stores


def test_model_cards_for_every_version(store, builder, files, tmp_path):
    from nbmlops.registry import cards

    baseline, gate_file = files
    builder.register()
    promotion.promote(store, baseline, gate_rules(gate_file))
    builder.register()
    for version in ("1", "2"):  # evidently's report of each, its scripts inline
        run = version_details(store, version)["run_id"]
        store.client().log_text(run, f"<html><head></head><body><script>{'x' * 60_000}</script>"
                                     f"<p>v{version}</p></body>", "reports/performance.html")  # fmt: skip
    written = cards.write_cards(store, tmp_path / "cards", gate_rules(gate_file), str(baseline))
    assert sorted(written) == ["1", "2"]
    page = written["1"].read_text()
    sha = version_details(store, "1")["tags"]["sha256"]
    assert sha in page and "champion" in page and "w1" in page
    reports = sorted((tmp_path / "cards").glob("v*-performance.html"))
    assert len(reports) == 2
    for card in reports:  # evidently's scripts, once beside the cards
        refs = re.findall(r'(?:src|href)="([^"]*assets/[^"]+)"', card.read_text())
        assert refs and all((card.parent / ref).is_file() for ref in refs), (card, refs)
    assert len(list((tmp_path / "cards" / "assets").iterdir())) == 1
    markdown = (tmp_path / "cards" / "v2.md").read_text()
    assert markdown.startswith(f"# Model card: {store.model_name} v2")
    assert re.search(r"\| roc_auc +\|", markdown)
