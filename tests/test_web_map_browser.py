"""The web map in a real browser: Debian Chromium (Playwright) against a real uvicorn server.

Leaflet page at ``/`` (SR versus bicubic swipe, status line, phone viewport) and the
OpenLayers page ``/ol.html`` that builds its layer from the WMTS capabilities. Screenshots
go to ``test-artifacts/`` (git-ignored); ``HNDSR_DOCS_SCREENSHOT=1`` also refreshes
``docs/img/web-map.png``. Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import io
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = ROOT / "test-artifacts"
WEB_MAP_DIR = ROOT / "tileserver" / "static" / "web_map"


def build_web_map() -> Path:
    """Run scripts/build-web-map.sh (a no-op when the build is current); the built folder."""
    result = subprocess.run(
        [str(ROOT / "scripts" / "build-web-map.sh")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"build-web-map.sh failed:\n{result.stdout}\n{result.stderr}"
    assert (WEB_MAP_DIR / "index.html").is_file(), "the build did not produce index.html"
    return WEB_MAP_DIR


def launch_chromium() -> Iterator[object]:
    """A headless Debian Chromium (fails, never skips, when it is missing)."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/system-deps.sh (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class TileResponse:
    url: str
    status: int
    mode: str | None
    scale: str | None
    z: int
    sr: str | None


@dataclass
class PageWatch:
    """Console errors, uncaught exceptions and tile responses seen by one page."""

    errors: list[str] = field(default_factory=list)
    tiles: list[TileResponse] = field(default_factory=list)

    def attach(self, page) -> PageWatch:
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        page.on("response", self._on_response)
        return self

    def _on_console(self, message) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} ({message.location.get('url')})")

    def _on_response(self, response) -> None:
        parsed = urlparse(response.url)
        parts = parsed.path.split("/")
        if "tiles" not in parts:
            return
        index = parts.index("tiles")
        try:
            z = int(parts[index + 2])
        except (IndexError, ValueError):
            return
        query = parse_qs(parsed.query)
        headers = response.headers
        self.tiles.append(
            TileResponse(
                url=response.url,
                status=response.status,
                mode=headers.get("x-sr-mode"),
                scale=headers.get("x-sr-scale"),
                z=z,
                sr=query.get("sr", [None])[0],
            )
        )


def png_pixels(png: bytes) -> np.ndarray:
    """RGB pixels of a screenshot as an int16 array (H, W, 3)."""
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def assert_not_blank(pixels: np.ndarray, what: str) -> None:
    """Imagery, not a flat background: spread of values and many distinct colours."""
    flat = pixels.reshape(-1, 3)
    distinct = len(np.unique(flat[:: max(1, len(flat) // 20000)], axis=0))
    assert pixels.std() > 8, f"{what} looks blank (std {pixels.std():.1f})"
    assert distinct > 200, f"{what} looks blank ({distinct} distinct colours)"


def most_detailed_point(pixels: np.ndarray, block: int = 48) -> tuple[int, int]:
    """Centre of the block with the strongest gradients (away from the map's edges)."""
    grey = pixels.mean(axis=2)
    energy = np.abs(np.diff(grey, axis=0))[:, :-1] + np.abs(np.diff(grey, axis=1))[:-1, :]
    h, w = energy.shape
    best, best_xy = -1.0, (w // 2, h // 2)
    for y in range(block, h - 2 * block, block // 2):
        for x in range(block, w - 2 * block, block // 2):
            value = float(energy[y : y + block, x : x + block].mean())
            if value > best:
                best, best_xy = value, (x + block // 2, y + block // 2)
    return best_xy


def save_png(png: bytes, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.write_bytes(png)
    return path


# --------------------------------------------------------------------------- fixtures

VIEWPORT = {"width": 960, "height": 640}
PHONE = {"width": 390, "height": 844}
TILE_WAIT_MS = 120_000
NOT_SR = (None, "off")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    yield from launch_chromium()


@pytest.fixture(scope="module")
def base_url(server_url: str) -> str:
    """The session server (sample scene, shipped model) with the web map built."""
    build_web_map()
    response = httpx.get(f"{server_url}/", headers={"Accept": "text/html"}, timeout=30)
    assert response.status_code == 200 and "main.js" in response.text, response.text[:300]
    return server_url


@pytest.fixture(scope="module")
def catalog(base_url: str) -> list[dict]:
    response = httpx.get(f"{base_url}/catalog", timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, list) and body, f"empty catalog: {body!r}"
    return body


def native_zoom(entry: dict) -> int:
    return int(entry["native_maxzoom"])


def tilejson_256(entry: dict) -> dict:
    """The dataset's tilejson for 256-px tiles (the tile size both pages use)."""
    url = httpx.URL(entry["tilejson"]).copy_merge_params({"tilesize": 256})
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def sr_max_zoom(entry: dict) -> int:
    return int(tilejson_256(entry)["maxzoom"])


WAIT_TILES_JS = """
(z) => {
  const ready = (label) => {
    const selector = `img.sr-tile[data-layer="${label}"][data-z="${z}"]`;
    const tiles = [...document.querySelectorAll(selector)];
    return tiles.length > 0 && tiles.every((img) => img.dataset.srMode &&
      (img.dataset.srMode === "empty" || (img.complete && img.naturalWidth > 0)));
  };
  return window.hndsr && hndsr.ready && hndsr.map.getZoom() === z &&
    !hndsr.loading.sr && !hndsr.loading.bicubic && ready("sr") && ready("bicubic");
}
"""


STATE_JS = """() => ({zoom: hndsr.map.getZoom(), loading: hndsr.loading, errors: hndsr.errors,
  status: document.getElementById("status").textContent,
  tiles: [...document.querySelectorAll("img.sr-tile")].map((i) =>
    `${i.dataset.layer} ${i.dataset.z}/${i.dataset.x}/${i.dataset.y} ${i.dataset.srMode} ` +
    `${i.complete} ${i.naturalWidth}`)})"""


def wait_for_tiles(page, zoom: int) -> None:
    """Both layers have every tile of ``zoom`` in view loaded (or known empty)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(WAIT_TILES_JS, arg=zoom, timeout=TILE_WAIT_MS)
    except PlaywrightTimeout:
        pytest.fail(f"tiles of zoom {zoom} did not load: {page.evaluate(STATE_JS)}")
    page.wait_for_timeout(400)  # Leaflet's 200 ms tile fade-in


@pytest.fixture(scope="module")
def leaflet(browser, base_url: str, catalog: list[dict]):
    """The Leaflet page zoomed two levels past native at the dataset centre, tiles loaded."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    watch = PageWatch().attach(page)
    page.goto(f"{base_url}/", wait_until="load")
    page.wait_for_function("window.hndsr && hndsr.ready === true", timeout=60_000)
    entry = catalog[0]
    wait_for_tiles(page, page.evaluate("hndsr.map.getZoom()"))
    zoom = min(native_zoom(entry) + 2, sr_max_zoom(entry))
    assert zoom > native_zoom(entry), f"no zoom past native for {entry}"
    # Zoom in where the scene has most detail (SR and bicubic differ at edges, not on water).
    x, y = most_detailed_point(png_pixels(page.locator("#map").screenshot()))
    page.evaluate(
        "([x, y, z]) => hndsr.map.setView(hndsr.map.containerPointToLatLng([x, y]), z, "
        "{ animate: false })",
        [x, y, zoom],
    )
    wait_for_tiles(page, zoom)
    yield page, watch, entry, zoom
    context.close()


# --------------------------------------------------------------------------- Leaflet page


def test_page_loads_without_console_errors(leaflet) -> None:
    page, watch, entry, _ = leaflet
    assert page.locator("#dataset option").count() >= 1
    assert page.locator("#dataset").input_value() == str(entry["id"])
    assert page.evaluate("hndsr.map.getMaxZoom()") == sr_max_zoom(entry), "zoom not up to SR max"
    assert page.title().startswith("hndsr-tiles")
    assert watch.errors == [], "\n".join(watch.errors)


def test_sr_side_is_super_resolved_past_native_zoom(leaflet) -> None:
    _, watch, _, zoom = leaflet
    sr_tiles = [t for t in watch.tiles if t.z == zoom and t.sr != "bicubic"]
    assert sr_tiles, "no SR tile requests at the zoom past native"
    assert all(t.sr == "auto" for t in sr_tiles), {t.sr for t in sr_tiles}
    bad = [
        (t.url, t.status, t.mode) for t in sr_tiles if t.status != 200 or t.mode in (None, "off")
    ]
    assert not bad, f"SR tiles not 200 / not super-resolved: {bad[:5]}"
    assert {t.mode for t in sr_tiles} <= {"fast", "diffusion", "bicubic", "degraded-bicubic"}


def test_bicubic_side_loads(leaflet) -> None:
    page, watch, _, zoom = leaflet
    bicubic = [t for t in watch.tiles if t.z == zoom and t.sr == "bicubic"]
    assert bicubic, "no bicubic tile requests"
    assert all(t.status == 200 and t.mode == "bicubic" for t in bicubic), [
        (t.status, t.mode) for t in bicubic[:5]
    ]
    shown = page.locator(
        f'img.sr-tile[data-layer="bicubic"][data-z="{zoom}"][data-sr-mode="bicubic"]'
    )
    assert shown.count() >= 1


def test_status_line_and_attribution(leaflet) -> None:
    page, _, entry, zoom = leaflet
    status = page.locator("#status").inner_text()
    assert f"zoom {zoom}" in status, status
    assert f"native {native_zoom(entry)}" in status, status
    assert "scale" in status and "SR from zoom" in status, status
    # the centre tile's X-SR-Scale and X-SR-Mode, not the estimate (≈)
    match = re.search(r"scale ×([\d.]+)(?:,[\d.]+)? \(([a-z-]+)\)", status)
    assert match, f"the status line has no X-SR-Scale of the centre tile: {status}"
    assert float(match[1]) > 1.1 and match[2] not in NOT_SR, status
    start = tilejson_256(entry)["description"]
    assert f"zooms {status.split('SR from zoom ')[1].split(' ')[0]}-" in start, (status, start)
    attribution = page.locator(".leaflet-control-attribution").inner_text()
    assert entry.get("attribution"), f"catalog entry without attribution: {entry}"
    assert str(entry["attribution"])[:20] in attribution, attribution


def test_swipe_handle_changes_layer_at_fixed_pixel(leaflet) -> None:
    page, watch, _, zoom = leaflet
    map_box = page.locator("#map").bounding_box()
    width = int(map_box["width"])
    assert page.evaluate("hndsr.swipe.getRatio()") == pytest.approx(0.5)
    before_png = page.locator("#map").screenshot()
    handle = page.locator(".swipe-handle").bounding_box()
    start = (handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(map_box["x"] + map_box["width"] * 0.92, start[1], steps=12)
    page.mouse.up()
    assert page.evaluate("hndsr.swipe.getRatio()") == pytest.approx(0.92, abs=0.02)
    assert page.evaluate("hndsr.map.getZoom()") == zoom, "the drag moved the map instead"
    page.wait_for_timeout(300)
    after_png = page.locator("#map").screenshot()
    save_png(before_png, "web-map-swipe-before.png")
    save_png(after_png, "web-map-swipe-after.png")
    before, after = png_pixels(before_png), png_pixels(after_png)
    assert_not_blank(before, "screenshot before the swipe")
    assert_not_blank(after, "screenshot after the swipe")
    diff = np.abs(before - after).max(axis=2)
    # Left of both divider positions: SR before and after, so the same pixels.
    sr_both = diff[:, int(width * 0.05) : int(width * 0.45)]
    assert sr_both.max() <= 2, "the SR side changed although the divider did not cross it"
    # Between the old and the new divider (handle and lines excluded): bicubic -> SR.
    crossed = diff[:, int(width * 0.55) : int(width * 0.88)]
    changed = (crossed > 6).mean()
    model = page.evaluate("fetch('/readyz').then((r) => r.json()).then((b) => b.model)")
    assert changed > 0.01, (
        "the pixels the divider crossed show the same image with the SR and bicubic "
        f"layers ({changed:.2%} differ by more than 6 DN); /readyz model: {model} "
        "(without a loaded model sr=auto is bicubic, and both sides are the same pixels)"
    )
    # The fixed pixel where SR and bicubic differ most: it now shows the SR layer's colour.
    y, x = np.unravel_index(np.argmax(crossed), crossed.shape)
    assert crossed[y, x] > 20, f"largest SR/bicubic difference only {crossed[y, x]} DN"
    assert watch.errors == [], "\n".join(watch.errors)
    import os

    if os.environ.get("HNDSR_DOCS_SCREENSHOT") == "1":
        docs_img = ROOT / "docs" / "img" / "web-map.png"
        docs_img.parent.mkdir(parents=True, exist_ok=True)
        shot = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
        shot.quantize(colors=192, method=Image.Quantize.MEDIANCUT).save(docs_img, optimize=True)


VIEW_JS = """() => ({zoom: hndsr.map.getZoom(), lat: hndsr.map.getCenter().lat,
  lon: hndsr.map.getCenter().lng, swipe: hndsr.swipe.getRatio(), hash: location.hash})"""


def test_a_link_opens_the_same_view_and_swipe_position(leaflet, browser) -> None:
    page, _, _, zoom = leaflet
    page.evaluate("hndsr.swipe.setRatio(0.3)")
    view = page.evaluate(VIEW_JS)
    z, lat, lon, swipe = view["hash"].lstrip("#").split("/")
    assert (int(z), float(swipe)) == (zoom, 30.0), view
    assert float(lat) == pytest.approx(view["lat"], abs=1e-4), view
    assert float(lon) == pytest.approx(view["lon"], abs=1e-4), view
    link = page.url
    assert "dataset=" in link and link.endswith(view["hash"]), link
    context = browser.new_context(viewport=VIEWPORT)
    try:
        opened = context.new_page()
        watch = PageWatch().attach(opened)
        opened.goto(link, wait_until="load")
        opened.wait_for_function("window.hndsr && hndsr.ready === true", timeout=60_000)
        wait_for_tiles(opened, zoom)  # the linked view's tiles, both layers
        again = opened.evaluate(VIEW_JS)
        assert again["zoom"] == zoom and again["swipe"] == pytest.approx(0.3), again
        assert again["lat"] == pytest.approx(view["lat"], abs=1e-4), (again, view)
        assert again["lon"] == pytest.approx(view["lon"], abs=1e-4), (again, view)
        handle = opened.locator(".swipe-handle").bounding_box()
        width = opened.locator("#map").bounding_box()["width"]
        assert handle["x"] + handle["width"] / 2 == pytest.approx(0.3 * width, abs=3)
        # a hand-written Leaflet-style `#z/lat/lon` (no swipe) moves the open map there
        opened.evaluate(f"location.hash = '#{zoom - 1}/{lat}/{lon}'")
        opened.wait_for_function(f"hndsr.map.getZoom() === {zoom - 1}", timeout=10_000)
        wait_for_tiles(opened, zoom - 1)
        moved = opened.evaluate(VIEW_JS)
        assert moved["swipe"] == pytest.approx(0.3), moved  # unchanged without a 4th part
        assert moved["hash"].startswith(f"#{zoom - 1}/"), moved
        assert watch.errors == [], "\n".join(watch.errors)
    finally:
        context.close()
        page.evaluate("hndsr.swipe.setRatio(0.5)")


def test_phone_viewport(browser, base_url: str, catalog: list[dict]) -> None:
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    watch = PageWatch().attach(page)
    try:
        page.goto(f"{base_url}/", wait_until="load")
        page.wait_for_function("window.hndsr && hndsr.ready === true", timeout=60_000)
        zoom = page.evaluate("hndsr.map.getZoom()")
        wait_for_tiles(page, zoom)
        # the map fits the dataset: its bounds are in view
        view = [float(v) for v in page.evaluate("hndsr.map.getBounds().toBBoxString()").split(",")]
        west, south, east, north = catalog[0]["bounds"]
        assert view[0] <= west and view[1] <= south and view[2] >= east and view[3] >= north
        layout = page.evaluate(
            """() => ({
              scrollWidth: document.documentElement.scrollWidth,
              innerWidth: window.innerWidth,
              innerHeight: window.innerHeight,
              map: document.getElementById('map').getBoundingClientRect().toJSON(),
              handle: document.querySelector('.swipe-handle').getBoundingClientRect().toJSON(),
              status: document.getElementById('status').getBoundingClientRect().toJSON(),
              select: document.getElementById('dataset').getBoundingClientRect().toJSON(),
            })"""
        )
        assert layout["scrollWidth"] <= layout["innerWidth"], "horizontal overflow on a phone"
        assert layout["map"]["height"] >= 0.6 * layout["innerHeight"], layout["map"]
        assert layout["map"]["width"] == layout["innerWidth"]
        for name in ("handle", "status", "select"):
            box = layout[name]
            assert box["left"] >= 0 and box["right"] <= layout["innerWidth"], (name, box)
            assert box["top"] >= 0 and box["bottom"] <= layout["innerHeight"], (name, box)
        assert layout["handle"]["width"] >= 40, "swipe handle too small to touch"
        png = page.screenshot()
        save_png(png, "web-map-phone.png")
        assert_not_blank(png_pixels(png), "phone screenshot")
        assert watch.errors == [], "\n".join(watch.errors)
    finally:
        context.close()


# --------------------------------------------------------------------------- OpenLayers page


def test_openlayers_page_loads_tiles_from_wmts_capabilities(browser, base_url, catalog) -> None:
    entry = catalog[0]
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    watch = PageWatch().attach(page)
    capabilities = []
    page.on(
        "response",
        lambda r: "WMTSCapabilities.xml" in r.url and capabilities.append((r.url, r.status)),
    )
    try:
        page.goto(f"{base_url}/ol.html?dataset={entry['id']}", wait_until="load")
        page.wait_for_function(
            "window.hndsrOl && hndsrOl.ready === true && hndsrOl.tilesLoaded >= 2",
            timeout=TILE_WAIT_MS,
        )
        assert capabilities and all(status == 200 for _, status in capabilities), capabilities
        state = page.evaluate(
            "({layer: hndsrOl.layer, urls: hndsrOl.tileUrls, errors: hndsrOl.tileErrors})"
        )
        assert state["errors"] == 0
        assert "WebMercatorQuad" in state["layer"], state
        template = state["urls"][0]
        assert "{TileMatrix}" in template and "sr=auto" in template, template
        # zoom past native: the tiles OpenLayers requests from the WMTS template are SR
        zoom = min(native_zoom(entry) + 1, sr_max_zoom(entry))
        page.evaluate("(z) => hndsrOl.map.getView().setZoom(z)", zoom)
        marker = f"/WebMercatorQuad/{zoom}/"
        page.wait_for_function(
            "(m) => hndsrOl.loadedUrls.filter((u) => u.includes(m)).length >= 2",
            arg=marker,
            timeout=TILE_WAIT_MS,
        )
        tiles = [t for t in watch.tiles if t.z == zoom]
        assert tiles, "OpenLayers requested no tiles at the zoom past native"
        assert all(t.status == 200 for t in tiles), [(t.url, t.status) for t in tiles[:5]]
        assert all(t.mode not in (None, "off") for t in tiles), {t.mode for t in tiles}
        png = page.locator("#map").screenshot()
        save_png(png, "web-map-openlayers.png")
        assert_not_blank(png_pixels(png), "OpenLayers screenshot")
        assert watch.errors == [], "\n".join(watch.errors)
    finally:
        context.close()


# --------------------------------------------------------------------------- degraded tiles

TEST_APP = "tests.apps.server_app:create_app"
"""The real app with the bicubic-as-a-model test upscaler; HNDSR_TEST_FAIL makes it fail."""

DEGRADED_JS = """
(z) => [...document.querySelectorAll(`img.sr-tile[data-layer="sr"][data-z="${z}"]`)]
  .filter((img) => img.dataset.srMode !== "empty")
  .map((img) => ({mode: img.dataset.srMode, degraded: img.classList.contains("degraded"),
                  outline: getComputedStyle(img).outlineStyle}))
"""


def test_degraded_tiles_are_marked_until_the_sr_tile_replaces_them(
    browser, live_server, sample_scene: Path, tmp_path: Path
) -> None:
    build_web_map()
    fault = tmp_path / "model-fails"
    fault.touch()
    base = live_server(
        {"HNDSR_DATA_DIR": str(sample_scene), "HNDSR_TEST_FAIL": str(fault)}, app=TEST_APP
    )
    entry = httpx.get(f"{base}/catalog", timeout=30).json()[0]
    zoom = native_zoom(entry) + 2
    context = browser.new_context(viewport={"width": 640, "height": 480})
    page = context.new_page()
    try:
        page.goto(f"{base}/", wait_until="load")
        page.wait_for_function("window.hndsr && hndsr.ready === true", timeout=60_000)
        wait_for_tiles(page, page.evaluate("hndsr.map.getZoom()"))
        page.evaluate("(z) => hndsr.map.setZoom(z, { animate: false })", zoom)
        wait_for_tiles(page, zoom)
        tiles = page.evaluate(DEGRADED_JS, zoom)
        assert tiles and all(t["mode"] == "degraded-bicubic" for t in tiles), tiles
        assert all(t["degraded"] and t["outline"] == "dashed" for t in tiles), tiles
        assert "degraded" in page.locator("#status").inner_text()
        save_png(page.screenshot(), "web-map-degraded.png")
        fault.unlink()  # the model works again: refetches after the short max-age get SR
        page.wait_for_function(
            f"(z) => {{ const t = ({DEGRADED_JS})(z); "
            "return t.length > 0 && t.every((x) => x.mode === 'fast' && !x.degraded); }",
            arg=zoom,
            timeout=TILE_WAIT_MS * 2,  # retries every max-age (10 s); slow while overloaded
        )
        assert "degraded" not in page.locator("#status").inner_text()
    finally:
        context.close()


def test_mode_selector_switches_the_sr_side_to_the_chosen_model_mode(
    browser, live_server, sample_scene: Path
) -> None:
    build_web_map()
    base = live_server({"HNDSR_DATA_DIR": str(sample_scene)}, app=TEST_APP)
    entry = httpx.get(f"{base}/catalog", timeout=30).json()[0]
    zoom = native_zoom(entry) + 1
    context = browser.new_context(viewport={"width": 640, "height": 480})
    page = context.new_page()
    watch = PageWatch().attach(page)
    try:
        page.goto(f"{base}/", wait_until="load")
        page.wait_for_function("window.hndsr && hndsr.ready === true", timeout=60_000)
        select = page.locator("#mode")
        assert select.is_visible(), "the test model offers fast and diffusion: no selector"
        assert select.locator("option").all_inner_texts() == ["auto (default)", "fast", "diffusion"]
        wait_for_tiles(page, page.evaluate("hndsr.map.getZoom()"))
        page.evaluate("(z) => hndsr.map.setZoom(z, { animate: false })", zoom)
        wait_for_tiles(page, zoom)
        select.select_option("diffusion")
        page.wait_for_function(
            f"(z) => {{ const t = ({DEGRADED_JS})(z); "
            "return t.length > 0 && t.every((x) => x.mode === 'diffusion'); }",
            arg=zoom,
            timeout=TILE_WAIT_MS,
        )
        assert "diffusion" in page.locator(".swipe-label-left").inner_text()
        diffusion = [t for t in watch.tiles if t.sr == "diffusion"]
        assert diffusion and all(t.status == 200 and t.mode == "diffusion" for t in diffusion)
        bicubic = [t for t in watch.tiles if t.sr == "bicubic" and t.z == zoom]
        assert bicubic, "the bicubic side was not loaded"
    finally:
        context.close()
