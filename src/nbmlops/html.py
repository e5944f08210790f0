"""Self-contained HTML pages: inline CSS, inline PNG plots, every value escaped, no CDN."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import os
import re
import uuid
from collections import Counter
from html import escape
from pathlib import Path

import pandas as pd

from . import storage

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


#: evidently's data block as variables: `var NAME = {json};` one after the other.
_VARIABLES = re.compile(r"(?:^|;\n)\s*var (\w+) = ")
#: Significant digits kept of the numbers evidently plots.
DIGITS = 6
#: The page's one copy of the plotly template evidently writes into every plot's layout.
TEMPLATE_VARIABLE = "nbmlops_plot_template"


def compact_report_data(page: str) -> str:
    """evidently's data block without what its page never reads, its numbers to DIGITS
    significant digits, and the plotly template every plot repeats written once (the plots
    look the same).

    The drift table's widget carries every column's detail plots twice: in the widget
    (`additionalGraphs`) and in the `additional_graphs_…` variable, the only copy the page's
    script reads (`drawDashboard` takes it as its map of graphs). Each plot's layout carries
    the same 7 KB template: the layouts refer to one copy, TEMPLATE_VARIABLE, defined in a
    script before the block. A block of another layout is left as it is."""
    found = _DATA_BLOCK.search(page)
    if found is None:
        return page
    text = found[0][len("<script>") : -len(found[3])]  # "var metric_… = {…};\n var additional…"
    names = _VARIABLES.findall(text)
    values = _VARIABLES.split(text)[2::2]
    try:
        parsed = [json.loads(v) for v in values]
    except ValueError:
        return page
    for name, value in zip(names, parsed, strict=True):
        if name.startswith("metric_"):
            _drop_key(value, "additionalGraphs")
    layouts = [layout for value in parsed for layout in _layouts(value)]
    keys = [json.dumps(layout["template"], sort_keys=True) for layout in layouts]
    counted = Counter(keys)
    shared, reference, head = None, "", ""
    if counted and counted.most_common(1)[0][1] > 1:
        shared = counted.most_common(1)[0][0]
        reference = f"__template_{uuid.uuid4().hex}__"  # no value on the page can be this
        kept = None
        for layout, key in zip(layouts, keys, strict=True):
            if key == shared:
                kept, layout["template"] = layout["template"], reference
        template = json.dumps(_rounded(kept), separators=(",", ":"))
        safe = template.replace("<", "\\u003c")  # nothing in it can end its script
        head = f"<script>var {TEMPLATE_VARIABLE} = {safe};</script>\n"
    block = ";\n    ".join(f"var {n} = {json.dumps(_rounded(v), separators=(',', ':'))}"
                            for n, v in zip(names, parsed, strict=True))  # fmt: skip
    if shared is not None:
        block = block.replace(json.dumps(reference), TEMPLATE_VARIABLE)
    return (page[: found.start()] + head + "<script>\n    " + block + found[3]
            + page[found.end() :])  # fmt: skip


def _layouts(value) -> list[dict]:
    """Every plot layout with a template under `value`."""
    if isinstance(value, dict):
        found = [value["layout"]] if isinstance(value.get("layout"), dict) and (
            "template" in value["layout"]) else []  # fmt: skip
        return found + [layout for item in value.values() for layout in _layouts(item)]
    if isinstance(value, list):
        return [layout for item in value for layout in _layouts(item)]
    return []


def _drop_key(value, key: str) -> None:
    if isinstance(value, dict):
        value.pop(key, None)
        for item in value.values():
            _drop_key(item, key)
    elif isinstance(value, list):
        for item in value:
            _drop_key(item, key)


def _rounded(value):
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.{DIGITS}g}")
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


# An inline script or style, its attributes and its body (a script ends where a browser ends it)
_SCRIPT = re.compile(r"<script((?:\s[^>]*)?)>(.*?)</script>", re.S)
_STYLE = re.compile(r"<style((?:\s[^>]*)?)>(.*?)</style>", re.S)
#: The attributes of a script that may load from a file instead: none, or a classic JavaScript
#: type (a module script from a file does not run on a page opened from disk: CORS).
_MOVABLE_SCRIPT = re.compile(r'^(\s+type="text/javascript")?$')
#: An inline script or style larger than this is moved to a file the pages share.
SHARED_BYTES = 50_000
#: The folder beside a page its shared scripts and styles go to when no other is named.
ASSETS = "assets"


def shared(page: str, path: str | Path, assets: str | Path | None = None,
           min_bytes: int = SHARED_BYTES) -> str:  # fmt: skip
    """`page`, to be written at `path`, with its large scripts and styles moved to `assets`
    (the project's one folder of them; default: ASSETS beside the page) and linked relative
    to the page (`share_blocks`)."""
    folder = Path(assets) if assets else Path(path).parent / ASSETS
    href = Path(os.path.relpath(folder, Path(path).parent)).as_posix() + "/"
    return share_blocks(page, folder, href, min_bytes)


def share_blocks(page: str, folder: Path, href: str, min_bytes: int = SHARED_BYTES) -> str:
    """`page` with each inline script and style over `min_bytes` (evidently's 3.5 MB of
    JavaScript, its fonts; a notebook page's styles) moved to a file in `folder` named by its
    content's hash, written once and linked as `href` + its name: every page then loads the
    same file. A page's own data stays in it."""

    def moved(body: str, suffix: str) -> str:
        name = f"{hashlib.sha256(body.encode()).hexdigest()[:16]}.{suffix}"
        if not (Path(folder) / name).is_file():
            storage.write_text(Path(folder) / name, body)
        return escape(href + name)

    def script(match: re.Match) -> str:
        attributes, body = match[1], match[2]
        if (len(body) < min_bytes or body.lstrip().startswith("var metric_")
                or not _MOVABLE_SCRIPT.match(attributes)):  # fmt: skip
            return match[0]
        return f'<script{attributes} src="{moved(body, "js")}"></script>'

    def style(match: re.Match) -> str:
        if len(match[2]) < min_bytes:
            return match[0]
        return f'<link rel="stylesheet" href="{moved(match[2], "css")}">'

    page = _SCRIPT.sub(script, page)
    head, body = page.split("<body>", 1) if "<body>" in page else (page, None)
    head = _STYLE.sub(style, head)  # in the head: a style in the body may sit in a script
    return head if body is None else head + "<body>" + body


def prune_assets(assets: str | Path, pages: str | Path) -> list[Path]:
    """Remove the files of `assets` that no HTML page under `pages` links (an upgrade of
    evidently or nbconvert leaves the old copy behind); returns what was removed."""
    folder = Path(assets)
    names = {p.name for p in folder.iterdir() if p.is_file()} if folder.is_dir() else set()
    used: set[str] = set()
    for page in Path(pages).rglob("*.html"):
        text = page.read_text(encoding="utf-8", errors="replace")
        used |= {name for name in names - used if name in text}
    gone = [folder / name for name in sorted(names - used)]
    for path in gone:
        path.unlink()
    return gone


def with_way_back(page: str, href: str, label: str) -> str:
    """`page` with a bar on top linking back to `href`."""
    style = "font:15px system-ui,sans-serif;background:#1d2330;padding:.5rem 1rem"
    back = f'<a style="color:#cfe0ff" href="{escape(href)}">&larr; {escape(label)}</a>'
    return page.replace("<body>", f'<body><nav style="{style}">{back}</nav>', 1)


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
.verdict{background:#fff;border:1px solid #dde1e7;border-left:6px solid #8a93a3;
padding:.6rem .8rem;font-size:1.02rem;border-radius:4px}
.verdict b{text-transform:uppercase;margin-right:.4rem}
.verdict.pass{border-left-color:#11772f}.verdict.warn{border-left-color:#d08c00}
.verdict.fail{border-left-color:#b3261e}
.verdict.pass,.verdict.warn,.verdict.fail{color:#1d2330;font-weight:400}
.verdict.pass b{color:#11772f}.verdict.warn b{color:#8a5a00}.verdict.fail b{color:#b3261e}
td.wrap{white-space:normal;min-width:18rem;max-width:40rem}
summary{cursor:pointer;margin:.6rem 0;font-weight:600}
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
    wrap: tuple[str, ...] = (),
) -> str:
    """An escaped HTML table.

    `classes` maps a cell's text to a CSS class (e.g. 'fail'); `links` maps a column to one
    href per row, turning that column's cells into links; the cells of `wrap` columns wrap
    their text (reasons, sentences) where the others stay on one line.
    """
    head = "".join(f"<th>{escape(str(c))}</th>" for c in df.columns)
    rows = []
    for i, record in enumerate(df.itertuples(index=False)):
        cells = []
        for column, value in zip(df.columns, record, strict=True):
            text = _fmt(value)
            css = " ".join(c for c in ((classes or {}).get(text), "wrap" * (column in wrap)) if c)
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


def verdict(status: str, parts: list[str]) -> str:
    """The page's verdict, first: pass, warn or fail in its colour, then what it rests on."""
    said = " · ".join(escape(p) for p in parts)
    return f'<p class="verdict {escape(status)}"><b>{escape(status or "no verdict")}</b> {said}</p>'


def details(summary: str, inner: str) -> str:
    """`inner` folded under a line a person clicks to open."""
    return f"<details><summary>{escape(summary)}</summary>{inner}</details>"


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
