"""The reports site in a real headless Chromium, network off: every page, every link."""

import io
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from nbmlops.tools import browser as browser_tool
from tests.helpers import HOSTILE, HOSTILE_COLUMN

pytestmark = [pytest.mark.pipeline, pytest.mark.xdist_group("build")]

CHROMIUM = browser_tool.find()
GENERATED_BY_OTHERS = ("/batches/", "performance.html", "/notebooks/")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if CHROMIUM is None:
        pytest.fail("no Chromium or Chrome: run `make browser` (make test runs it)")
    # Chromium keeps a Unix socket in its temporary folder: under a runner-deep TMPDIR its
    # path passes the 107-byte limit and Chromium stops at once. Give it a short one.
    short = tempfile.mkdtemp(prefix="nbm-chromium-", dir="/tmp" if Path("/tmp").is_dir() else None)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS,
                              env={**os.environ, "TMPDIR": short})  # fmt: skip
        yield b
        b.close()
    shutil.rmtree(short, ignore_errors=True)


def _not_blank(png: bytes) -> bool:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("L")
    low, high = image.getextrema()
    return high - low > 50 and len(set(image.resize((64, 64)).getdata())) > 8


def _visit(context, url: str):
    page = context.new_page()
    problems = []
    page.on(
        "console",
        lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("dialog", lambda d: (problems.append(f"dialog opened: {d.message}"), d.dismiss()))
    page.goto(url, wait_until="load")
    page.wait_for_timeout(300)
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    png = page.screenshot(full_page=False)
    return page, problems, hrefs, png


def crawl(browser, index: Path, visit=None) -> int:
    """Open index and every page it leads to, network off; fail on any error. Returns pages seen.

    `visit(url, page)` runs on each loaded page for further checks.
    """
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    outside = []

    def block(route):
        if not route.request.url.startswith(("file://", "data:", "blob:")):
            outside.append(route.request.url)
            return route.abort()
        return route.continue_()

    context.route("**/*", block)
    start = index.resolve().as_uri()
    queue, seen = [start], set()
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        page, problems, hrefs, png = _visit(context, url)
        assert not problems, f"{url}: {problems[:3]}"
        assert _not_blank(png), f"{url} renders blank"
        if visit:
            visit(url, page)
        for href in hrefs:
            parsed = urlparse(href)
            if parsed.scheme != "file":  # evidently's and nbconvert's pages credit their makers
                assert any(mark in url for mark in GENERATED_BY_OTHERS), (
                    f"{url} links outside: {href}"
                )
                continue
            target = Path(unquote(parsed.path))
            assert target.is_file(), f"{url} links to missing {target}"
            if target.suffix == ".html":
                queue.append(target.resolve().as_uri())
        page.close()
    context.close()
    assert not outside, f"pages tried to reach the network: {outside[:3]}"
    return len(seen)


def test_every_page_renders_offline_with_working_links(ci_build, browser):
    pages = crawl(browser, ci_build.reports / "index.html")
    assert pages >= 20  # index, quality, performance, monitoring, batches, notebooks, cards


@pytest.mark.xdist_group("byo")
def test_hostile_values_show_as_text_and_never_run(byo_build, browser):
    """Markup and script in category values and a column name: text on every page, never code."""
    texts = {}

    def visit(url, page):
        page.wait_for_timeout(200)  # evidently draws its widgets after load
        ran = page.evaluate("window.__pwned")
        assert ran is None, f"{url}: hostile data ran as script (window.__pwned = {ran})"
        texts[url] = page.evaluate("document.body.innerText")

    pages = crawl(browser, byo_build.reports / "index.html", visit)
    assert pages >= 15
    shown = "\n".join(texts.values())
    for value in (*HOSTILE, HOSTILE_COLUMN):
        assert value in shown, f"{value!r} is not shown as text on any page"
    monitoring = next(v for k, v in texts.items() if k.endswith("/monitoring/index.html"))
    assert HOSTILE[2] in monitoring  # the unseen-category table


def test_index_and_monitoring_read_on_a_phone(ci_build, browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    for page_path in ("index.html", "monitoring/index.html"):
        page = context.new_page()
        page.goto((ci_build.reports / page_path).resolve().as_uri())
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{page_path} scrolls sideways by {overflow}px on a phone"
        page.close()


def test_the_verdict_comes_first_and_each_batchs_verdict_fits_the_screen(ci_build, browser):
    """The project page and the monitoring page open on their verdict; the monitoring table's
    verdict columns sit within a 1400-pixel screen; the front page leads with each verdict."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    for page_path in ("index.html", "monitoring/index.html"):
        page.goto((ci_build.reports / page_path).resolve().as_uri())
        first = page.eval_on_selector("main", "m => m.firstElementChild.className")
        said = page.eval_on_selector("main", "m => m.firstElementChild.innerText")
        assert first.split()[0] == "verdict" and first.split()[1] in ("pass", "warn", "fail"), (
            page_path, first)  # fmt: skip
        assert "newest batch" in said, said
    columns = page.eval_on_selector_all(
        "main table >> nth=0 >> th", "ths => ths.map(t => [t.innerText, t.getBoundingClientRect().right])"
    )  # fmt: skip
    assert [name for name, _ in columns] == ["batch", "status", "reasons", "warnings"]
    assert max(right for _, right in columns) <= 1400, columns
    page.goto((ci_build.reports.parent / "index.html").resolve().as_uri())
    heads = page.eval_on_selector_all("main th", "ths => ths.map(t => t.innerText)")
    assert heads[:4] == ["project", "verdict", "gates", "monitoring"], heads
    context.close()


def test_a_batch_pages_detail_plots_draw_with_the_shared_template(ci_build, browser):
    """A batch page's plots refer to one copy of plotly's template: expanding a column's
    details draws its plots with it (the template's grey plot area), without an error."""
    page = browser.new_page(viewport={"width": 1300, "height": 2400})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    batch = sorted((ci_build.reports / "monitoring" / "batches").glob("batch-2013-*.html"))[0]
    assert "nbmlops_plot_template" in batch.read_text(encoding="utf-8")
    page.goto(batch.resolve().as_uri())
    page.wait_for_timeout(1000)
    shown = page.evaluate("document.querySelectorAll('.main-svg').length")
    buttons = page.query_selector_all("tbody tr button")
    assert len(buttons) >= 2
    for button in buttons[:2]:
        button.click()
        page.wait_for_timeout(800)
    fills = page.evaluate(
        "Array.from(document.querySelectorAll('.main-svg .bglayer .bg')).map(e => e.style.fill)"
    )
    assert page.evaluate("document.querySelectorAll('.main-svg').length") > shown
    assert fills and all(fill == "rgb(229, 236, 246)" for fill in fills), fills
    assert not errors, errors
    page.close()
