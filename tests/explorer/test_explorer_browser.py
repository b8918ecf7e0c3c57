"""The explorer page in a real browser: headless Chromium driven by Playwright, against
`vaelab serve`'s app run by uvicorn in a thread on a free loopback port.

Needs the Python package playwright and a Chromium (Debian: apt-get install chromium; another
binary via $VAELAB_CHROMIUM); skipped, saying which is missing, otherwise. Screenshots go to the
test's tmp_path, and also to $VAELAB_SHOTS when that names a folder.
"""

import json
import os
import statistics
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import CHROMIUM, CHROMIUM_ARGS

from vaelab import explorer
from vaelab.explorer import server

pytestmark = pytest.mark.slow  # a browser
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the Python package playwright is not installed (pip install playwright)"
)
if not Path(CHROMIUM).is_file():
    pytest.skip(
        f"no Chromium at {CHROMIUM} (apt-get install chromium, or set VAELAB_CHROMIUM)", allow_module_level=True
    )


@pytest.fixture(scope="module")
def base_url(trained_run):
    import uvicorn

    runs = explorer.load_runs([trained_run("conv"), trained_run("cvae")])
    sock = server.listen("127.0.0.1", 0)
    web = uvicorn.Server(uvicorn.Config(explorer.create_app(runs), log_level="warning"))
    thread = threading.Thread(target=web.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not web.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert web.started, "uvicorn did not start"
    yield server.address(sock)
    web.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Watch:
    """Every request the page makes, the most decode requests in flight at once, and its errors."""

    def __init__(self, page):
        self.urls, self.errors, self.in_flight, self.most_in_flight = [], [], 0, 0
        page.on("request", self.sent)
        page.on("requestfinished", self.done)
        page.on("requestfailed", self.done)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))

    def sent(self, request):
        self.urls.append(request.url)
        if request.url.endswith("/api/decode"):
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)

    def done(self, request):
        if request.url.endswith("/api/decode"):
            self.in_flight -= 1


@pytest.fixture
def page(browser, base_url, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 1100}, has_touch=True)
    page = context.new_page()
    page.watch = Watch(page)
    start = time.perf_counter()
    page.goto(base_url)
    page.wait_for_selector("#scatter[data-points]")
    page.ready_seconds = time.perf_counter() - start
    yield page
    assert not page.watch.errors, page.watch.errors
    outside = [u for u in page.watch.urls if not u.startswith(base_url) and not u.startswith("data:")]
    assert not outside, f"requests outside the server: {outside}"
    context.close()


def shoot(page, tmp_path, name: str) -> None:
    folders = [tmp_path] + ([Path(os.environ["VAELAB_SHOTS"])] if os.environ.get("VAELAB_SHOTS") else [])
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def at(page, selector: str, fx: float, fy: float) -> tuple[float, float]:
    """The page position at fractions (fx, fy) of an element's box."""
    box = page.locator(selector).bounding_box()
    return box["x"] + fx * box["width"], box["y"] + fy * box["height"]


def wait_for_new_src(page, selector: str, old):
    page.wait_for_function(
        "([s, old]) => { const src = document.querySelector(s).getAttribute('src'); return src && src !== old; }",
        arg=[selector, old],
    )
    return page.get_attribute(selector, "src")


# (predicates are written as functions: the page's Content-Security-Policy forbids evaluating
# bare expressions, which Playwright would have to eval)


def test_the_decoded_image_follows_the_mouse_with_one_request_in_flight(page, tmp_path):
    page.mouse.move(*at(page, "#scatter", 0.25, 0.25))
    first = wait_for_new_src(page, "#decoded", None)
    page.mouse.move(*at(page, "#scatter", 0.8, 0.75), steps=60)
    last = wait_for_new_src(page, "#decoded", first)
    assert last != first
    assert page.watch.most_in_flight == 1  # coalesced: never a backlog
    assert "no projection" in page.text_content("#caption")
    assert len(page.locator("#legend li").all()) == 10
    shoot(page, tmp_path, "1-hover")
    durations = page.evaluate(
        "performance.getEntriesByType('resource').filter(e => e.name.endsWith('/api/decode')).map(e => e.duration)"
    )
    report = {
        "decode_round_trip_ms_median": statistics.median(durations),
        "decodes": len(durations),
        "page_ready_s": page.ready_seconds,
    }
    print(json.dumps(report))
    (tmp_path / "timings.json").write_text(json.dumps(report))


def test_a_drawing_is_encoded_and_marked_on_the_scatter(page, tmp_path):
    before = page.evaluate("document.querySelector('#scatter').toDataURL()")
    page.mouse.move(*at(page, "#pad", 0.55, 0.15))
    page.mouse.down()
    for fx, fy in ((0.45, 0.5), (0.5, 0.85)):  # a "1", slightly slanted
        page.mouse.move(*at(page, "#pad", fx, fy), steps=12)
    page.mouse.up()
    page.wait_for_selector("#scatter[data-drawn]")
    wait_for_new_src(page, "#recon", None)
    assert page.evaluate("document.querySelector('#scatter').toDataURL()") != before  # the ★ appeared
    assert "encoder mean z" in page.text_content("#drawn-at")
    shoot(page, tmp_path, "2-drawing")


def test_a_touch_stroke_draws_too(page):
    cdp = page.context.new_cdp_session(page)
    points = [at(page, "#pad", 0.5, 0.1 + 0.08 * i) for i in range(10)]
    cdp.send(
        "Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [dict(zip("xy", points[0], strict=True))]}
    )
    for x, y in points[1:]:
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    page.wait_for_selector("#scatter[data-drawn]")


def test_the_label_picker_redecodes_a_cvae_point(page, tmp_path):
    assert page.is_visible("#run-picker") and page.is_hidden("#label-picker")  # conv first: no labels
    page.select_option("#run", "1")
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('cvae')")
    assert page.is_visible("#label-picker")
    page.mouse.move(*at(page, "#scatter", 0.5, 0.5))
    image = wait_for_new_src(page, "#decoded", None)
    for label in ("7", "2"):
        page.click(f"#labels button[data-label='{label}']")
        image = wait_for_new_src(page, "#decoded", image)
        assert page.get_attribute(f"#labels button[data-label='{label}']", "aria-checked") == "true"
    shoot(page, tmp_path, "3-cvae-label")


def test_two_clicks_give_an_interpolation_and_the_grid_covers_the_zoomed_view(page, base_url, tmp_path):
    page.mouse.click(*at(page, "#scatter", 0.2, 0.3))
    page.mouse.click(*at(page, "#scatter", 0.8, 0.7))
    page.wait_for_function("() => document.querySelectorAll('#strip img').length === 10")
    page.mouse.move(*at(page, "#scatter", 0.5, 0.5))
    page.mouse.wheel(0, -400)  # zoom in
    page.select_option("#grid-n", "11")
    with page.expect_request("**/api/grid") as grid_request:
        page.click("#show-grid")
    wait_for_new_src(page, "#grid", None)
    size = page.evaluate("(g => [g.naturalWidth, g.naturalHeight])(document.querySelector('#grid'))")
    assert size == [11 * 28, 11 * 28]
    with urllib.request.urlopen(base_url + "api/info") as response:
        (x0, x1), _ = json.loads(response.read())["runs"][0]["view"]
    lo, hi = grid_request.value.post_data_json["x_range"]
    assert x0 < lo < hi < x1  # the grid spans what is visible, not the whole data
    shoot(page, tmp_path, "4-interpolation-grid")


def test_switching_runs_leaves_nothing_of_the_last_run(page, tmp_path):
    page.mouse.move(*at(page, "#scatter", 0.4, 0.4))
    wait_for_new_src(page, "#decoded", None)
    page.mouse.click(*at(page, "#scatter", 0.2, 0.3))
    page.mouse.click(*at(page, "#scatter", 0.8, 0.7))
    page.wait_for_function("() => document.querySelectorAll('#strip img').length === 10")
    assert page.text_content("#strip-caption").startswith("A (")
    page.select_option("#run", "1")
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('cvae')")
    assert page.text_content("#decoded-at") == "move over the scatter"
    assert page.text_content("#strip-caption") == "click two points of the scatter"
    assert page.get_attribute("#decoded", "src") is None and not page.locator("#strip img").all()
    assert page.get_attribute("#scatter", "data-hover") is None
    shoot(page, tmp_path, "5-switched")


def test_hovering_marks_the_point_that_is_decoded(page):
    before = page.evaluate("document.querySelector('#scatter').toDataURL()")
    page.mouse.move(*at(page, "#scatter", 0.3, 0.6))
    wait_for_new_src(page, "#decoded", None)
    page.wait_for_function("() => document.querySelector('#decoded-at').textContent.startsWith('plane (')")
    marked = [float(v) for v in page.get_attribute("#scatter", "data-hover").split(",")]
    shown = page.text_content("#decoded-at").removeprefix("plane (").split(")")[0].split(", ")
    assert [round(v, 2) for v in marked] == [float(v) for v in shown]  # the mark is where the image comes from
    assert page.evaluate("document.querySelector('#scatter').toDataURL()") != before


def test_beside_a_notebook_800_by_700_the_decoded_image_is_in_view(browser, base_url, tmp_path):
    context = browser.new_context(viewport={"width": 800, "height": 700})
    page = context.new_page()
    page.goto(base_url)
    page.wait_for_selector("#scatter[data-points]")
    page.mouse.move(*at(page, "#scatter", 0.5, 0.5))
    wait_for_new_src(page, "#decoded", None)
    for selector in ("#scatter", "#decoded"):
        box = page.locator(selector).bounding_box()
        assert box["x"] >= 0 and box["y"] >= 0, selector
        assert box["x"] + box["width"] <= 800 and box["y"] + box["height"] <= 700, (selector, box)
    shoot(page, tmp_path, "6-800x700")
    context.close()
