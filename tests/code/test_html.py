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
