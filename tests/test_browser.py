"""The smoke build in headless Chromium, from file://: offline, math rendered, images loaded, widgets alive."""
import json
import shutil
import tempfile

import pytest

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--disable-quic", "--disable-sync"]
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")

# TeX that would be left on a page whose math did not render
RAW_TEX = r"/\$\$|\\\(|\\\[|\\mathcal|\\frac|\\sum|\\hat\{|\\tilde\{/"

VISIBLE_IMAGES = """root => Array.from(root.querySelectorAll('img')).filter(img => {
    const r = img.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && getComputedStyle(img).visibility !== 'hidden';
}).map(img => img.src)"""


@pytest.fixture(scope="module")
def browser_context():
    playwright_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: `make test` installs Debian's chromium (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile, playwright_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(profile, executable_path=chromium, headless=True,
                                                       args=CHROMIUM_FLAGS, viewport={"width": 1280, "height": 800})
        context.set_default_timeout(60_000)  # a first start just after installing chromium, under load, is slow
        yield context
        context.close()


@pytest.fixture(scope="module")
def pages(smoke_book):
    html = smoke_book.parent
    found = sorted(p for p in html.rglob("*.html") if "_static" not in p.parts and "widgets" not in p.parts
                   and 'http-equiv="Refresh"' not in p.read_text()[:200])  # index.html only redirects to intro.html
    assert any(p.name == "savos_theorem1.html" for p in found)
    return found


def open_page(context, path):
    """Open a page and wait for what the tests read: the load event, then MathJax's typesetting where the page has
    math (not network idle: a file:// page has no network, and idle-waiting timed out once under load)."""
    requests, errors = [], []
    page = context.new_page()
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri(), wait_until="load", timeout=60_000)
    if page.locator(".math").count():  # MathJax typesets asynchronously
        page.wait_for_selector("mjx-container", state="attached", timeout=60_000)
        page.wait_for_function("() => !document.querySelector('.math:not(:has(mjx-container))')", timeout=60_000)
    return page, requests, errors


@pytest.mark.slow
def test_every_page_renders_offline(browser_context, pages):
    for path in pages:
        page, requests, errors = open_page(browser_context, path)
        leaving = [u for u in requests if not u.startswith(LOCAL_SCHEMES)]
        assert not leaving, f"{path.name} requested {leaving}"
        assert not errors, f"{path.name}: JavaScript errors {errors}"
        text = page.evaluate("() => document.querySelector('main, article, body').innerText")
        assert not page.evaluate(f"t => {RAW_TEX}.test(t)", text), f"{path.name}: raw TeX left on the page"
        broken = page.evaluate("() => Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
        assert not broken, f"{path.name}: images that did not load: {broken}"
        page.close()


@pytest.mark.slow
def test_theorem_chapter_has_math_and_figures(browser_context, pages):
    path = next(p for p in pages if p.name == "savos_theorem1.html")
    page, _, _ = open_page(browser_context, path)
    assert page.locator("mjx-container").count() >= 10
    assert page.evaluate("() => document.querySelectorAll('img[src*=\"_images\"]').length") >= 4
    page.close()


@pytest.mark.slow
def test_widget_reacts_without_a_kernel(browser_context, pages):
    path = next(p for p in pages if p.name == "savos_theorem1.html")
    page, requests, errors = open_page(browser_context, path)
    explorer = page.locator(".amodalkit-explorer").first
    explorer.wait_for(state="visible", timeout=60_000)  # the widget manager renders it after load
    page.wait_for_function("() => document.querySelector('.amodalkit-explorer img')", timeout=60_000)
    # one image per grid layer, in order: frame, visible, amodal (off: a blank image), predicted
    before = explorer.evaluate(VISIBLE_IMAGES)
    assert len(before) == 4, f"frame + 3 layers expected, got {len(before)}"
    explorer.locator(".noUi-handle").first.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"root => ({VISIBLE_IMAGES})(root)[0] !== {json.dumps(before[0])}",
                           arg=explorer.element_handle(), timeout=5000)
    after = explorer.evaluate(VISIBLE_IMAGES)
    assert after[0] != before[0] and after[1] != before[1] and after[3] != before[3], "frame and shown layers follow the slider"
    assert after[2] == before[2], "the switched-off layer stays blank"
    assert "1" in explorer.locator(".widget-readout").first.inner_text()
    # switching the 'amodal' layer on replaces its blank image by that frame's amodal outline
    explorer.locator(".widget-toggle-buttons").nth(1).get_by_text("show").click()
    page.wait_for_function(f"root => ({VISIBLE_IMAGES})(root)[2] !== {json.dumps(after[2])}",
                           arg=explorer.element_handle(), timeout=5000)
    assert explorer.evaluate(VISIBLE_IMAGES)[0] == after[0], "toggling a layer keeps the frame"
    assert not [u for u in requests if not u.startswith(LOCAL_SCHEMES)]
    assert not errors
    page.close()


# a table wider than the text column, or sticking out of the box it sits in (a chapter's claims box)
TABLE_OVERFLOW = """() => Array.from(document.querySelectorAll('main table, article table')).map(t => {
    const box = t.closest('article, main, .bd-article') || t.parentElement;
    const r = t.getBoundingClientRect(), p = t.parentElement.getBoundingClientRect();
    return {width: r.width, room: box.clientWidth, right: r.right, parentRight: p.right, cls: t.className};
}).filter(t => t.width > t.room + 1 || t.right > t.parentRight + 1)"""


@pytest.mark.slow
def test_claims_page_fits_1280_px_and_its_links_land(browser_context, pages):
    path = next(p for p in pages if p.name == "claims.html")
    page, _, errors = open_page(browser_context, path)
    assert page.viewport_size["width"] == 1280
    assert page.locator("table.ak-claims").count() == 5, "one claims table per paper"
    assert page.evaluate(TABLE_OVERFLOW) == [], "a table is wider than its column"
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), "horizontal scrollbar"
    assert page.locator(".ak-bar-row").count() == 5, "a verdict bar per paper"
    # the details of a claim open on a click and hold its rule
    details = page.locator("tr.ak-details details").first
    details.locator("summary").click()
    assert details.evaluate("d => d.open") and "Rule" in details.inner_text()
    links = page.evaluate("() => Array.from(document.querySelectorAll('table.ak-claims a[href*=\"chapters/\"]')).map(a => a.getAttribute('href'))")
    assert links, "claims link to their chapters"
    for href in sorted(set(links)):
        target, _, anchor = href.partition("#")
        chapter, _, _ = open_page(browser_context, path.parent / target)
        assert chapter.locator(f"[id='{anchor}']").count() == 1, f"{href}: no such claim in the chapter's box"
        overflow = [t for t in chapter.evaluate(TABLE_OVERFLOW) if t["cls"] == "ak-claims"]
        assert overflow == [], f"{target}: the claims box's table sticks out of its box"
        chapter.close()
    # and a chapter's box links back to the claims page's rows
    chapter, _, _ = open_page(browser_context, path.parent / links[0].partition("#")[0])
    back = chapter.evaluate("() => Array.from(document.querySelectorAll('.ak-chapter-claims a[href*=\"claims.html#\"]')).map(a => a.getAttribute('href'))")
    assert back
    for href in back:
        assert page.locator(f"[id='{href.partition('#')[2]}']").count() == 1, f"{href}: no such row on the claims page"
    chapter.close()
    assert not errors
    page.close()
    differences, _, _ = open_page(browser_context, path.parent / "differences.html")
    assert differences.locator("table").count() >= 4 and differences.evaluate(TABLE_OVERFLOW) == []
    differences.close()
