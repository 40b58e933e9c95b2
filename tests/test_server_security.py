"""Security probes against a real server: every one is refused (403/400) and none reaches
its target (a canary HTTP server records every request it gets)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.plugins.canary import Canary
from tests.plugins.server import ServerPool

SCENE = "landsat8/LC08_L1TP_224078_20200518_rgb8"


@pytest.fixture(scope="module")
def redirector(canary: Canary) -> Iterator[Canary]:
    """An allowed host that redirects everything to the canary."""
    server = Canary(redirect_to=f"{canary.url}/item.json")
    yield server
    server.close()


@pytest.fixture(scope="module")
def setup(sample_scene: Path, canary: Canary, redirector: Canary, tmp_path_factory):
    """A data dir with the scene, a symlink out of it, and a STAC item pointing outside;
    a raster outside the data dir; a server allowing the data dir and the redirector."""
    root = tmp_path_factory.mktemp("security")
    data, outside = root / "data", root / "outside"
    data.mkdir()
    outside.mkdir()
    shutil.copy(sample_scene / f"{SCENE}.tif", data / "scene.tif")
    shutil.copy(sample_scene / f"{SCENE}.tif", outside / "secret.tif")
    (data / "link.tif").symlink_to(outside / "secret.tif")
    item = json.loads((sample_scene / f"{SCENE}.json").read_text())
    item["assets"]["visual"]["href"] = f"{canary.url}/evil.tif"
    (data / "evil-item.json").write_text(json.dumps(item))
    item["assets"]["visual"]["href"] = str(outside / "secret.tif")
    (data / "local-evil-item.json").write_text(json.dumps(item))
    pool = ServerPool(root / "servers")
    url = pool.start(
        {"HNDSR_DATA_DIR": str(data), "HNDSR_ALLOWED_SOURCES": f"{data},{redirector.url}/stac/"}
    )
    yield {"url": url, "data": data, "outside": outside}
    pool.close()


def probes(canary_url: str, redirector_url: str, outside: Path, data: Path) -> dict[str, str]:
    return {
        "etc-passwd": "/etc/passwd",
        "missing-file-outside": "/etc/no-such-file.tif",
        "raster-outside": str(outside / "secret.tif"),
        "dotdot-escape": f"{data}/../outside/secret.tif",
        "symlink-out": str(data / "link.tif"),
        "canary-url": f"{canary_url}/x.tif",
        "vsicurl": f"/vsicurl/{canary_url}/x.tif",
        "vsicurl-spaced": f"  /vsicurl/{canary_url}/x.tif",
        "gdal-prefix": f"GTIFF_RAW:{outside / 'secret.tif'}",
        "vrt-file": str(data / "x.vrt"),
        "inline-vrt": (
            '<VRTDataset rasterXSize="1" rasterYSize="1"><VRTRasterBand dataType="Byte" band="1">'
            f"<SimpleSource><SourceFilename>{outside / 'secret.tif'}</SourceFilename>"
            "</SimpleSource></VRTRasterBand></VRTDataset>"
        ),
        "inline-gdal-wms": (
            f'<GDAL_WMS><Service name="TMS"><ServerUrl>{canary_url}/${{z}}/${{x}}/${{y}}'
            "</ServerUrl></Service></GDAL_WMS>"
        ),
        "wms-connection": f"WMS:{canary_url}/wms",
        "redirect-host-other-path": f"{redirector_url}/other/x.tif",
    }


PROBE_NAMES = list(probes("", "", Path("/"), Path("/")))
ENDPOINTS = [
    "/cog/info",
    "/cog/tiles/WebMercatorQuad/14/5710/9384.png",
    "/cog/WebMercatorQuad/tilejson.json",
    "/cog/WMTSCapabilities.xml",
]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("probe", PROBE_NAMES)
def test_cog_probes_are_refused_without_reaching_the_target(
    setup, canary, redirector, endpoint, probe
):
    source = probes(canary.url, redirector.url, setup["outside"], setup["data"])[probe]
    response = httpx.get(f"{setup['url']}{endpoint}", params={"url": source}, timeout=30)
    assert response.status_code in (400, 403), response.text
    assert canary.requests == []
    assert redirector.requests == []


def test_refusals_do_not_reveal_whether_a_path_exists(setup):
    texts = {
        httpx.get(f"{setup['url']}/cog/info", params={"url": path}).text
        for path in ("/etc/passwd", "/etc/no-such-file", str(setup["outside"] / "secret.tif"))
    }
    assert len(texts) == 1


def test_allowed_scene_is_served(setup):
    response = httpx.get(
        f"{setup['url']}/cog/info", params={"url": str(setup["data"] / "scene.tif")}
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "item",
    [
        "canary-item",  # STAC item URL outside the allowlist
        "redirect",  # allowed host redirecting to the canary
        "outside-file",
        "asset-to-canary",  # allowed item whose asset points to the canary
        "asset-outside",  # allowed item whose asset is a local file outside
    ],
)
def test_stac_probes_are_refused_without_reaching_the_target(setup, canary, redirector, item):
    source = {
        "canary-item": f"{canary.url}/item.json",
        "redirect": f"{redirector.url}/stac/item.json",
        "outside-file": str(setup["outside"] / "item.json"),
        "asset-to-canary": str(setup["data"] / "evil-item.json"),
        "asset-outside": str(setup["data"] / "local-evil-item.json"),
    }[item]
    response = httpx.get(
        f"{setup['url']}/stac/tiles/WebMercatorQuad/14/5710/9384.png",
        params={"url": source, "assets": "visual"},
        timeout=30,
    )
    assert response.status_code in (400, 403), response.text
    assert canary.requests == []
    if item == "redirect":
        assert set(redirector.requests) == {"/stac/item.json"}  # allowed hop, refused next
