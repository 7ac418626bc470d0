"""The console's pages in real headless Chromium (Debian's ``chromium``, driven by Playwright).

Every page loads without a console error; rollback, replay, cancel, reject, pin and clear are
clicked and their effect comes back through Kafka; hostile text from the topics shows as text;
the density map colours by density, marks the golden samples, hovers the input and zooms.
Screenshots go to ``$VT_CONSOLE_SCREENSHOTS`` when set (``docs/console`` holds the
committed ones), else to the test's temporary directory.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stream.contract import events
from stream.tools.traffic import Labelled

from tests.support.console import HOOKS_FN, HOSTILE, HOSTILE_FN, TOKEN, Stack, wait_until

pytestmark = pytest.mark.broker

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is needed (apt-get install chromium; .ci/run installs it)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    out = Path(os.environ.get("VT_CONSOLE_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


class Tab:
    """A page with its console errors, uncaught exceptions and failed requests collected."""

    def __init__(self, browser: Any, url: str, token: str | None = None) -> None:
        self.page = browser.new_page(viewport={"width": 1360, "height": 900})
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("requestfailed", lambda r: self.errors.append(f"requestfailed: {r.url} {r.failure}"))
        self.page.on("dialog", lambda d: d.accept())
        self.page.goto(url)
        if token:
            self.page.fill("#token", token)
            self.page.dispatch_event("#token", "change")

    def close(self) -> None:
        self.page.close()


PAGES = [
    ("overview", "/", "#functions tbody tr[data-function]"),
    ("function", "/functions/summarize_ticket", "#golden tbody tr[data-uuid]"),
    ("hooks", f"/functions/{HOOKS_FN}/hooks", "#versions tbody tr[data-version]"),
    ("training", "/functions/route_ticket/training", "#jobs tbody tr[data-job]"),
    ("dlq", "/dlq", "#dlq tbody tr[data-id]"),
]


@pytest.mark.parametrize(("name", "path", "ready"), PAGES, ids=[p[0] for p in PAGES])
def test_every_page_loads_without_console_errors(stack: Stack, browser: Any, shots: Path, name: str, path: str, ready: str) -> None:
    tab = Tab(browser, stack.url + path)
    try:
        tab.page.wait_for_selector(ready, timeout=20_000)
        if name == "function":
            tab.page.wait_for_selector("#map .main-svg", timeout=20_000)  # Plotly drew the map
            assert "indexed logs, PCA" in tab.page.text_content("#map-note")
            assert tab.page.locator("#map .legendtext").filter(has_text="golden steady").count() == 1
        if name == "overview":
            assert tab.page.locator("#functions tbody tr[data-function]").count() >= 6
            wait_until(lambda: tab.page.text_content("#lag") == "0", timeout=10, what="the lag tile")
        tab.page.wait_for_timeout(2500)  # a live refresh or two
        tab.page.screenshot(path=str(shots / f"console-{name}.png"), full_page=name != "dlq")
        assert tab.errors == [], tab.errors
    finally:
        tab.close()


def test_hostile_text_shows_as_text(stack: Stack, browser: Any) -> None:
    tab = Tab(browser, f"{stack.url}/functions/{HOSTILE_FN}")
    try:
        tab.page.fill("#q", "onerror")
        tab.page.click("#golden-search button[type=submit]")
        tab.page.wait_for_selector("#golden tbody tr[data-uuid]", timeout=20_000)
        cell = tab.page.locator("#golden tbody tr[data-uuid] .chat").first.inner_text()
        assert HOSTILE in cell, cell
        assert tab.page.locator("#golden img, #golden script").count() == 0
        tab.page.wait_for_selector("#map .main-svg", timeout=20_000)
        assert tab.page.evaluate("window.__xss") is None
        assert tab.errors == [], tab.errors
    finally:
        tab.close()
    tab = Tab(browser, f"{stack.url}/dlq?reason=malformed_json")
    try:
        tab.page.wait_for_selector("#dlq tbody tr[data-id]", timeout=20_000)
        previews = tab.page.locator("#dlq .preview").all_inner_texts()
        assert any(HOSTILE in p for p in previews), previews
        assert tab.page.locator("#dlq img, #dlq script").count() == 0
        assert tab.page.evaluate("window.__xss") is None
        assert tab.errors == [], tab.errors
    finally:
        tab.close()


def test_rollback_clicked_arrives_back_through_kafka(stack: Stack, browser: Any) -> None:
    before = stack.get(f"/api/v1/functions/{HOOKS_FN}/hooks")["versions"]
    latest = before[-1]["version"]
    target = 2 if latest != 2 else 1
    tab = Tab(browser, f"{stack.url}/functions/{HOOKS_FN}/hooks", token=TOKEN)
    try:
        tab.page.click(f'#versions button.rollback[data-to="{target}"]')
        row = tab.page.wait_for_selector(f'#versions tbody tr[data-version="{latest + 1}"]', timeout=30_000)
        assert f"rollback to v{target}" in row.inner_text()
        assert tab.page.locator("#toast").inner_text().startswith("published v")
        assert tab.errors == [], tab.errors
    finally:
        tab.close()
    got = stack.get(f"/api/v1/functions/{HOOKS_FN}/hooks")["versions"][-1]
    assert (got["version"], got["rollback_of"]) == (latest + 1, target)


def test_wrong_token_is_refused_in_the_page(stack: Stack, browser: Any) -> None:
    latest = stack.get(f"/api/v1/functions/{HOOKS_FN}/hooks")["versions"][-1]["version"]
    tab = Tab(browser, f"{stack.url}/functions/{HOOKS_FN}/hooks", token="not-the-token")
    try:
        tab.page.click('#versions button.rollback[data-to="1"]')
        tab.page.wait_for_selector("#toast.error", timeout=10_000)
        assert "401" in tab.page.inner_text("#toast")
    finally:
        tab.close()
    assert stack.get(f"/api/v1/functions/{HOOKS_FN}/hooks")["versions"][-1]["version"] == latest


def test_replay_and_cancel_clicked(stack: Stack, browser: Any) -> None:
    tab = Tab(browser, f"{stack.url}/dlq?reason=wrong_type", token=TOKEN)
    seen = stack.get("/api/v1/dlq")["seen"]
    try:
        tab.page.wait_for_selector("#dlq tbody tr[data-id]", timeout=20_000)
        tab.page.locator("#dlq .pick").first.check()
        tab.page.click("#replay-selected")
        wait_until(lambda: tab.page.text_content("#toast").startswith("replayed 1"), timeout=20, what="the replay toast")
        wait_until(lambda: stack.get("/api/v1/dlq")["seen"] > seen, timeout=30, what="the replayed value back on the dlq")
        assert tab.errors == [], tab.errors
    finally:
        tab.close()

    ev = events.TrainingEvent(job_id="job-page-1", function_name="page_train_fn", trainer="openai", base_model="gpt-4o-mini",
                              status="running", at=datetime.now(UTC), n_train=20, n_val=2, est_tokens=1000, est_cost_usd=0.003)
    stack.produce([Labelled("training", b"page_train_fn", events.encode(ev), None, "training")])  # type: ignore[arg-type]
    tab = Tab(browser, f"{stack.url}/functions/page_train_fn/training", token=TOKEN)
    try:
        tab.page.click('#jobs tr[data-job="job-page-1"] button.cancel', timeout=30_000)
        wait_until(lambda: "done" in tab.page.text_content("#toast"), timeout=20, what="the cancel toast")
        wait_until(lambda: stack.cancel_reached_processor("page_train_fn", "job-page-1"), timeout=20, what="the cancel request")
        assert tab.errors == [], tab.errors
    finally:
        tab.close()


def test_read_only_console_page(stack: Stack, browser: Any) -> None:
    url = stack.start_console(token=None)
    tab = Tab(browser, f"{url}/functions/{HOOKS_FN}/hooks")
    try:
        tab.page.wait_for_selector("#versions button.rollback", timeout=20_000)
        assert tab.page.inner_text("#mode") == "read-only"
        assert tab.page.locator("#versions button.rollback:not([disabled])").count() == 0
        assert tab.page.locator("#token").count() == 0
        assert tab.errors == [], tab.errors
    finally:
        tab.close()


def test_reject_clicked_removes_the_sample_once_it_comes_back_through_kafka(stack: Stack, browser: Any) -> None:
    from tests.support.console import clustered_logs

    fn = "curation_page_fn"
    stack.produce(clustered_logs(fn, seed=33))
    golden = wait_until(lambda: stack.get(f"/api/v1/functions/{fn}/golden")["items"], timeout=60, what="the golden set")
    victim = golden[0]["uuid"]
    # The page also draws the map, read from the processor's checkpoint: wait until one holds the function.
    wait_until(lambda: stack.get(f"/api/v1/functions/{fn}/map"), timeout=30, what="the function's map")
    tab = Tab(browser, f"{stack.url}/functions/{fn}", token=TOKEN)
    try:
        row = f'#golden tbody tr[data-uuid="{victim}"]'
        tab.page.wait_for_selector(row, timeout=20_000)
        tab.page.click(f"{row} button.reject")
        tab.page.wait_for_selector(row, state="detached", timeout=30_000)  # after the processor's tombstone was read back
        tab.page.wait_for_selector(f'#curation tbody tr[data-uuid="{victim}"]', timeout=10_000)
        assert "reject" in tab.page.locator(f'#curation tbody tr[data-uuid="{victim}"]').inner_text()
        # Clear it again from the curation table: the sample comes back.
        tab.page.click(f'#curation tbody tr[data-uuid="{victim}"] button.clear')
        tab.page.wait_for_selector(row, timeout=30_000)
        # Pin it: it stays golden, marked pinned once the processor's answer is read back; then unpin it.
        tab.page.wait_for_selector(f"{row} button.pin", timeout=30_000)
        tab.page.click(f"{row} button.pin")
        tab.page.wait_for_selector(f"{row} span.pinned", timeout=30_000)
        assert "pin" in tab.page.locator(f'#curation tbody tr[data-uuid="{victim}"]').inner_text()
        tab.page.click(f"{row} button.unpin")
        tab.page.wait_for_selector(f"{row} span.pinned", state="detached", timeout=30_000)
        assert tab.errors == [], tab.errors
    finally:
        tab.close()
    assert victim in {s["uuid"] for s in stack.get(f"/api/v1/functions/{fn}/golden", limit=500)["items"]}


def test_the_map_colours_by_density_marks_the_golden_samples_hovers_the_input_and_zooms(stack: Stack, browser: Any) -> None:
    from tests.support.console import clustered_logs

    fn = "map_page_fn"
    stack.produce(clustered_logs(fn, seed=34))

    def settled() -> tuple[list[Any], dict[str, Any]] | None:
        """The golden set once the map (read from the processor's checkpoint) marks the same number."""
        items = stack.get(f"/api/v1/functions/{fn}/golden")["items"]
        mapped = stack.get(f"/api/v1/functions/{fn}/map")
        return (items, mapped) if items and mapped and sum(1 for s in mapped["strategy"] if s) == len(items) else None

    golden, m = wait_until(settled, timeout=60, what="the golden set and the map to agree")
    tab = Tab(browser, f"{stack.url}/functions/{fn}")
    try:
        tab.page.wait_for_selector("#map .main-svg", timeout=20_000)
        traces = tab.page.evaluate(
            """() => document.getElementById("map").data.map((t) => ({
                name: t.name, n: t.x.length, text: t.text, density: t.customdata,
                colour: Array.isArray(t.marker.color) ? t.marker.color : null }))"""
        )
        by = {t["name"].split(" (")[0]: t for t in traces}
        ok = by["SUCCESS"]
        # Coloured by density: the colour of every SUCCESS point is its density from the checkpoint.
        assert ok["colour"] == ok["density"] and len(set(ok["density"])) > 1
        assert sorted(ok["density"] + by["golden steady"]["density"] + by["golden anomaly"]["density"]) == sorted(m["density"])
        # The golden samples are marked: as many as the golden set has, and they are its samples.
        marked = by["golden steady"]["n"] + by["golden anomaly"]["n"]
        assert marked == len(golden) > 0
        inputs = {f"ticket {int(s['uuid'].rsplit('-', 1)[1])}" for s in golden}
        assert all(any(i in t for i in inputs) for t in by["golden steady"]["text"] + by["golden anomaly"]["text"])
        # Hovering a golden sample's marker shows an input and its density (in a tight cluster the
        # closest point under the pointer may be a neighbour of the golden sample).
        point = tab.page.evaluate(
            """() => { const gd = document.getElementById("map");
                const t = gd.data.find((t) => t.name.startsWith("golden steady"));
                const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = gd.getBoundingClientRect();
                return { x: r.left + xa._offset + xa.l2p(t.x[0]), y: r.top + ya._offset + ya.l2p(t.y[0]), text: t.text[0] }; }"""
        )
        tab.page.mouse.move(point["x"], point["y"])
        tab.page.wait_for_selector("#map .hoverlayer .hovertext", timeout=10_000)
        hover = tab.page.locator("#map .hoverlayer .hovertext").first.text_content() or ""  # SVG: no inner_text
        assert any(i and i in hover for i in m["input"]) and "density" in hover, hover
        box = tab.page.locator("#map .nsewdrag").first.bounding_box()
        assert box is not None
        before = tab.page.evaluate('() => document.getElementById("map").layout.xaxis.range.slice()')
        # Zoom: drag a box over the middle of the plot; the x range narrows.
        x0, y0 = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3
        tab.page.mouse.move(x0, y0)
        tab.page.mouse.down()
        tab.page.mouse.move(x0 + box["width"] * 0.3, y0 + box["height"] * 0.3, steps=8)
        tab.page.mouse.up()
        tab.page.wait_for_function(
            "(w) => { const r = document.getElementById('map').layout.xaxis.range; return r && (r[1] - r[0]) < w * 0.6; }",
            arg=before[1] - before[0], timeout=10_000,
        )
        assert tab.errors == [], tab.errors
    finally:
        tab.close()
