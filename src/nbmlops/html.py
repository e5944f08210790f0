"""Self-contained HTML pages: inline CSS, inline PNG plots, every value escaped, no CDN."""

from __future__ import annotations

import base64
import io
import re
from html import escape

import pandas as pd

# A data block evidently embeds: `<script>\n    var metric_… = {json};\n    var …;\n</script>`.
# JSON strings cannot hold a raw newline, so the first `;\n</script>` after the start ends it.
_DATA_BLOCK = re.compile(r"(<script>\s*var metric_\w+ = )(.*?)(;\n</script>)", re.S)


def neutralize_script_data(page: str) -> str:
    """Make data embedded in a page's script blocks unable to close them.

    evidently writes category values and column names into a `<script>` block as raw JSON, so a
    value `</script><script>…` would end the block and run as markup. Every `<` inside the block
    can only sit in a JSON string; written as `\\u003c` it reads the same and closes nothing.
    """
    safe, found = _DATA_BLOCK.subn(lambda m: m[1] + m[2].replace("<", "\\u003c") + m[3], page)
    if not found and "var metric_" in page:
        raise ValueError("the report's data block has an unknown layout; cannot make it safe")
    return safe


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;
background:#f6f7f9;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:1rem}
header{background:#1d2330;color:#fff;padding:.8rem 1rem}header a{color:#cfe0ff}
h1{font-size:1.4rem;margin:.2rem 0}h2{font-size:1.15rem;margin-top:1.6rem}
.tbl{overflow-x:auto;max-width:100%;margin:.5rem 0}
table{border-collapse:collapse;background:#fff;font-size:.88rem}
th,td{border:1px solid #dde1e7;padding:.3rem .55rem;text-align:left;white-space:nowrap}
th{background:#eef1f5}
.pass{color:#11772f;font-weight:600}.fail{color:#b3261e;font-weight:600}
.warn{color:#8a5a00;font-weight:600}
.cards{display:flex;flex-wrap:wrap;gap:.6rem}
.card{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:.6rem .8rem;
min-width:150px}
.card b{display:block;font-size:1.25rem}
img{max-width:100%;height:auto;background:#fff;border:1px solid #dde1e7}
code{background:#eef1f5;padding:0 .25rem;border-radius:3px}
"""


def page(
    title: str, body: str, home: str | None = "index.html", home_label: str = "all reports"
) -> str:
    """A whole HTML document; `body` is trusted markup built with the helpers below."""
    nav = f'<a href="{escape(home)}">&larr; {escape(home_label)}</a>' if home else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body><header>{nav}<h1>{escape(title)}</h1></header><main>{body}</main></body></html>\n"
    )


def table(
    df: pd.DataFrame,
    classes: dict[str, str] | None = None,
    links: dict[str, list[str]] | None = None,
) -> str:
    """An escaped HTML table.

    `classes` maps a cell's text to a CSS class (e.g. 'fail'); `links` maps a column to one
    href per row, turning that column's cells into links.
    """
    head = "".join(f"<th>{escape(str(c))}</th>" for c in df.columns)
    rows = []
    for i, record in enumerate(df.itertuples(index=False)):
        cells = []
        for column, value in zip(df.columns, record, strict=True):
            text = _fmt(value)
            css = (classes or {}).get(text)
            attr = f' class="{css}"' if css else ""
            inner = link(links[column][i], text) if column in (links or {}) else escape(text)
            cells.append(f"<td{attr}>{inner}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<div class="tbl"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def link(href: str, text: str) -> str:
    return f'<a href="{escape(href)}">{escape(text)}</a>'


def link_list(items: list[tuple[str, str]]) -> str:
    """A bulleted list of (href, text) links."""
    return "<ul>" + "".join(f"<li>{link(href, text)}</li>" for href, text in items) + "</ul>"


def para(text: str) -> str:
    return f"<p>{escape(text)}</p>"


def heading(text: str) -> str:
    return f"<h2>{escape(text)}</h2>"


def cards(items: dict[str, object]) -> str:
    inner = "".join(
        f'<div class="card">{escape(str(k))}<b>{escape(_fmt(v))}</b></div>'
        for k, v in items.items()
    )
    return f'<div class="cards">{inner}</div>'


def figure(fig) -> str:
    """A matplotlib figure as an inline PNG <img>; the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:.4g}"
    return "" if value is None else str(value)


def markdown_tables(text: str) -> str:
    """HTML of simple Markdown: `#`/`##` headings, pipe tables and plain lines, all escaped."""
    out, rows = [], []

    def flush() -> None:
        if rows:
            head, body = rows[0], rows[2:]  # rows[1] is the |---| rule
            cells = "".join(f"<th>{escape(c)}</th>" for c in head)
            trs = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>"
                          for r in body)  # fmt: skip
            out.append(f'<div class="tbl"><table><thead><tr>{cells}</tr></thead>'
                       f"<tbody>{trs}</tbody></table></div>")  # fmt: skip
            rows.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        flush()
        if line.startswith("## "):
            out.append(heading(line[3:]))
        elif line.startswith("# "):
            continue  # the page title
        elif line.strip():
            out.append(para(line))
    flush()
    return "".join(out)
