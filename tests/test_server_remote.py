"""Remote sources through a real server: COGs over HTTP range requests (nginx) and S3 (moto)
equal the local file's bytes; every probe outside the allowlist is 403 with no request
reaching its target (canary, nginx's access log, the egress guard); a slow remote is 504
within the timeout + 1 s while other requests are served; a missing object is 404; an
object replaced in S3 gets new tiles (its new ETag is in the cache key)."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import numpy as np
import pytest
import rasterio
from prometheus_client.parser import text_string_to_metric_families

from tests.plugins.moto_s3 import S3Server
from tests.plugins.remote_http import RemoteHTTP
from tests.plugins.server import ServerPool

SCENE = "landsat8/LC08_L1TP_224078_20200518_rgb8.tif"
TIMEOUT_S = 2.0
BUCKET, OTHER_BUCKET = "hndsr-cogs", "hndsr-other"
NATIVE_TILE = "/cog/tiles/WebMercatorQuad/12/1427/2346.png"
SR_TILE = "/cog/tiles/WebMercatorQuad/14/5710/9384.png"


@pytest.fixture(scope="module")
def setup(
    sample_scene: Path,
    remote_http: RemoteHTTP,
    s3_server: S3Server,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict]:
    """The scene in a local data dir, under nginx's ``cogs/`` and ``other/``, and in two S3
    buckets; a server allowing the data dir, nginx's and the slow server's ``/cogs/``, and
    ``s3://hndsr-cogs/cogs/``, with a 2 s remote timeout and no retries."""
    root = tmp_path_factory.mktemp("remote")
    data = root / "data"
    data.mkdir()
    local = data / "scene.tif"
    shutil.copy(sample_scene / SCENE, local)
    for sub in ("cogs", "other"):
        shutil.copy(local, remote_http.root / sub / "scene.tif")
    item = json.loads((sample_scene / SCENE).with_suffix(".json").read_text())
    item["assets"]["visual"]["href"] = "./scene.tif"  # relative: next to the item
    for folder in (data, remote_http.root / "cogs"):
        (folder / "item.json").write_text(json.dumps(item))
    item["assets"]["visual"]["href"] = f"{remote_http.nginx.url}/other/scene.tif"
    (remote_http.root / "cogs" / "outside-item.json").write_text(json.dumps(item))
    s3 = s3_server.client()
    for bucket in (BUCKET, OTHER_BUCKET):
        s3.create_bucket(Bucket=bucket)
        s3.upload_file(str(local), bucket, "cogs/scene.tif")
    nginx, slow = remote_http.nginx.url, remote_http.slow.url
    pool = ServerPool(root / "servers")
    url = pool.start(
        {
            **s3_server.env,
            "HNDSR_DATA_DIR": str(data),
            "HNDSR_ALLOWED_SOURCES": f"{data},{nginx}/cogs/,{slow}/cogs/,{slow}/get/,"
            f"s3://{BUCKET}/cogs/",
            "HNDSR_REMOTE_TIMEOUT_S": str(TIMEOUT_S),
            "HNDSR_REMOTE_CONNECT_TIMEOUT_S": "1",
            "HNDSR_REMOTE_MAX_RETRY": "0",
            "HNDSR_REMOTE_IDENTITY_TTL_S": "0.5",
        }
    )
    yield {"url": url, "local": str(local), "nginx": nginx, "slow": slow, "s3": s3}
    pool.close()


def get(setup: dict, path: str, source: str, **params: str) -> httpx.Response:
    return httpx.get(f"{setup['url']}{path}", params={"url": source, **params}, timeout=60)


def egress_refused(server: str) -> float:
    """The server's count of connections its egress guard refused."""
    for family in text_string_to_metric_families(httpx.get(f"{server}/metrics").text):
        for sample in family.samples:
            if sample.name == "hndsr_egress_refused_total":
                return sample.value
    raise AssertionError("hndsr_egress_refused_total not exported")


def without_url(tilejson: dict) -> dict:
    """A tilejson with the ``url`` parameter dropped from its tile URLs."""
    tiles = []
    for tile in tilejson["tiles"]:
        parts = urlsplit(tile)
        query = sorted((k, v) for k, v in parse_qsl(parts.query) if k != "url")
        tiles.append((parts.path, query))
    return {**tilejson, "tiles": tiles}


CANONICAL = ["{nginx}/cogs/scene.tif", f"s3://{BUCKET}/cogs/scene.tif"]


@pytest.mark.parametrize(
    "spelling",
    [
        *CANONICAL,
        "/vsicurl/{nginx}/cogs/scene.tif",
        "{nginx}/cogs/moved/scene.tif",  # a redirect inside the prefix is followed
        f"/vsis3/{BUCKET}/cogs/scene.tif",
    ],
)
def test_remote_cog_equals_the_local_file(setup, remote_http, spelling):
    source = spelling.format(nginx=setup["nginx"])
    local_tj = get(setup, "/cog/WebMercatorQuad/tilejson.json", setup["local"])
    remote_tj = get(setup, "/cog/WebMercatorQuad/tilejson.json", source)
    assert remote_tj.status_code == 200, remote_tj.text
    assert without_url(remote_tj.json()) == without_url(local_tj.json())
    tiles = [(NATIVE_TILE, "auto")]
    if spelling in CANONICAL:  # the other spellings open the same URL: one SR tile each way
        tiles.append((SR_TILE, "bicubic"))
    for path, sr in tiles:
        local = get(setup, path, setup["local"], sr=sr)
        remote = get(setup, path, source, sr=sr)
        assert remote.status_code == 200, remote.text
        assert remote.headers["x-sr-mode"] == local.headers["x-sr-mode"]
        assert remote.content == local.content, path
    assert get(setup, SR_TILE, setup["local"], sr="bicubic").headers["x-sr-mode"] == "bicubic"
    assert remote_http.canary.requests == []


def test_remote_stac_item_and_its_assets(setup, remote_http):
    """A STAC item fetched from nginx, its relative asset href resolved to nginx: the same
    tile as the local item; an asset href outside the prefix is 403 before any request."""
    stac_tile = NATIVE_TILE.replace("/cog/", "/stac/")
    local = get(setup, stac_tile, str(Path(setup["local"]).parent / "item.json"), assets="visual")
    remote = get(setup, stac_tile, f"{setup['nginx']}/cogs/item.json", assets="visual")
    assert remote.status_code == 200, remote.text
    assert remote.content == local.content
    before = len(remote_http.nginx.log_lines("/other/"))
    outside = get(setup, stac_tile, f"{setup['nginx']}/cogs/outside-item.json", assets="visual")
    assert outside.status_code == 403, outside.text
    assert len(remote_http.nginx.log_lines("/other/")) == before


PROBES = {
    "outside-prefix": "{nginx}/other/scene.tif",
    "dotdot": "{nginx}/cogs/../other/scene.tif",
    "encoded-dotdot": "{nginx}/cogs/%2e%2e/other/scene.tif",
    "encoded-slash": "{nginx}/cogs/..%2fother/scene.tif",
    "double-encoded": "{nginx}/cogs/%252e%252e/other/scene.tif",
    "other-port": "{canary}/cogs/scene.tif",
    "redirect-to-other-host": "{nginx}/cogs/away/scene.tif",
    "vsicurl-other-host": "/vsicurl/{canary}/cogs/scene.tif",
    "vsicurl-encoded-dotdot": "/vsicurl/{nginx}/cogs/%2E%2E/other/scene.tif",
    "other-bucket": f"s3://{OTHER_BUCKET}/cogs/scene.tif",
    "vsis3-other-bucket": f"/vsis3/{OTHER_BUCKET}/cogs/scene.tif",
    "s3-dotdot": f"s3://{BUCKET}/cogs/../scene.tif",
}


@pytest.mark.parametrize("probe", PROBES)
def test_probes_are_refused_before_any_request(setup, remote_http, probe):
    source = PROBES[probe].format(nginx=setup["nginx"], canary=remote_http.canary.url)
    before = len(remote_http.nginx.log_lines("/other/"))
    for path in ("/cog/info", NATIVE_TILE):
        response = get(setup, path, source)
        assert response.status_code == 403, (path, response.text)
        assert response.json() == {"detail": "source not allowed"}
    assert remote_http.canary.requests == []
    assert len(remote_http.nginx.log_lines("/other/")) == before


def test_gdal_never_follows_a_redirect_to_another_host(setup, remote_http):
    """nginx answers the server's lookup and 302s GDAL's requests to the canary: the egress
    guard refuses the connection, the request fails cleanly (502), the canary sees nothing."""
    before = egress_refused(setup["url"])
    response = get(setup, NATIVE_TILE, f"{setup['nginx']}/cogs/switch/scene.tif")
    assert response.status_code == 502, response.text
    assert egress_refused(setup["url"]) > before
    assert remote_http.canary.requests == []
    assert remote_http.nginx.log_lines("GET /cogs/switch/scene.tif")  # GDAL did ask nginx


def test_missing_remote_objects_are_404(setup):
    for source in (f"{setup['nginx']}/cogs/missing.tif", f"s3://{BUCKET}/cogs/missing.tif"):
        response = get(setup, NATIVE_TILE, source)
        assert response.status_code == 404, (source, response.text)
        assert response.json() == {"detail": "dataset not found"}
    # outside the allowlist, a missing and an existing object answer alike
    answers = {
        get(setup, NATIVE_TILE, f"s3://{OTHER_BUCKET}/cogs/{name}").text
        for name in ("scene.tif", "missing.tif")
    }
    assert answers == {'{"detail":"source not allowed"}'}


@pytest.mark.parametrize("slow_part", ["lookup", "gdal-read"])
def test_a_slow_remote_is_504_within_the_timeout_while_others_are_served(setup, slow_part):
    """A remote that stalls on every request, or on GDAL's only (it answers the server's
    lookup at once): 504 within the timeout + 1 s."""
    source = f"{setup['slow']}/{'cogs' if slow_part == 'lookup' else 'get'}/scene.tif"
    finished: list[float] = []  # when each other request was answered (s after the start)

    def other_requests() -> None:
        for _ in range(3):
            response = get(setup, NATIVE_TILE, setup["local"], bidx="1")
            assert response.status_code == 200
            finished.append(time.monotonic() - start)

    start = time.monotonic()
    others = threading.Thread(target=other_requests)
    others.start()
    response = get(setup, NATIVE_TILE, source)
    elapsed = time.monotonic() - start
    others.join()
    print(f"slow {slow_part}: {response.status_code} after {elapsed:.2f} s; others {finished}")
    assert response.status_code == 504, response.text
    assert elapsed < TIMEOUT_S + 1.0
    assert len(finished) == 3 and finished[0] < elapsed  # served while the slow one waited


def test_a_replaced_s3_object_gets_new_tiles(setup):
    """Replaced by an image of the same byte size (uncompressed): GDAL's cached blocks of the
    old object must not be used either."""
    with rasterio.open(setup["local"]) as src:
        profile = {**src.profile, "driver": "GTiff", "compress": None}
        pixels = src.read()
    versions = {}
    for name, values in (("original", pixels), ("inverted", 255 - pixels)):
        versions[name] = Path(setup["local"]).parent / f"{name}.tif"  # allowed locally too
        with rasterio.open(versions[name], "w", **profile) as dst:
            dst.write(values.astype(np.uint8))
    assert versions["original"].stat().st_size == versions["inverted"].stat().st_size
    s3, key = setup["s3"], "cogs/replaced.tif"
    source = f"s3://{BUCKET}/{key}"
    s3.upload_file(str(versions["original"]), BUCKET, key)
    first = get(setup, NATIVE_TILE, source)
    again = get(setup, NATIVE_TILE, source)
    assert first.status_code == 200 and again.headers["x-cache"].startswith("HIT")
    assert first.content == get(setup, NATIVE_TILE, str(versions["original"])).content
    etag = s3.head_object(Bucket=BUCKET, Key=key)["ETag"]

    s3.upload_file(str(versions["inverted"]), BUCKET, key)
    assert s3.head_object(Bucket=BUCKET, Key=key)["ETag"] != etag
    time.sleep(2.5)  # the dataset identity is remembered for 2 s (remote lookup: 0.5 s)
    replaced = get(setup, NATIVE_TILE, source)
    assert replaced.status_code == 200
    assert replaced.headers["x-cache"] == "MISS"  # a new key, not the old entry
    assert replaced.content != first.content
    assert replaced.content == get(setup, NATIVE_TILE, str(versions["inverted"])).content
