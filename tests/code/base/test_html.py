import pandas as pd

from nbmlops import html


def test_values_and_titles_are_escaped():
    hostile = '<script>alert(1)</script>" onerror="x'
    df = pd.DataFrame({hostile: [hostile]})
    page = html.page(hostile, html.table(df) + html.para(hostile) + html.link(hostile, hostile))
    assert "<script>" not in page
    assert "&lt;script&gt;" in page


def test_page_is_self_contained():
    page = html.page("t", html.cards({"a": 1.23456}))
    assert "http://" not in page and "https://" not in page
    assert "1.235" in page


def test_figure_is_inline_png():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    tag = html.figure(fig)
    assert tag.startswith('<img alt="plot" src="data:image/png;base64,iVBOR')


def test_pages_at_any_depth_share_one_copy_and_unlinked_copies_are_pruned(tmp_path):
    script = "var lib = 1;" + " " * 60_000
    style = "body{color:red}" + " " * 60_000
    page = f"<html><head><style>{style}</style></head><body><script>{script}</script></body>"
    assets = tmp_path / "assets"
    written = {}
    for where in ("top.html", "models/card.html", "monitoring/batches/b.html"):
        path = tmp_path / where
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html.shared(page, path, assets), encoding="utf-8")
        written[where] = path.read_text(encoding="utf-8")
        assert len(written[where]) < 500 and "var lib" not in written[where]
    assert sorted(p.suffix for p in assets.iterdir()) == [".css", ".js"]  # once for all three
    assert (
        '"assets/' in written["top.html"]
        and '"../../assets/' in written["monitoring/batches/b.html"]
    )
    stale = assets / "0123456789abcdef.js"  # an older library's copy no page links
    stale.write_text("old", encoding="utf-8")
    assert html.prune_assets(assets, tmp_path) == [stale]
    assert len(list(assets.iterdir())) == 2
    small = "<html><head><style>p{}</style></head><body></body>"
    assert html.shared(small, tmp_path / "s.html", assets) == small  # its own styles stay


def test_a_module_script_stays_in_its_page(tmp_path):
    """A module script loaded from a file does not run on a page opened from disk (CORS)."""
    page = f'<html><head></head><body><script type="module">{"m" * 60_000}</script></body>'
    assert html.shared(page, tmp_path / "p.html", tmp_path / "assets") == page
