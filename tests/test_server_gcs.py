"""``gs://`` sources through a real server and the allowlist, on a real local endpoint: nginx
on 127.0.0.1 serving ``/<bucket>/<key>`` over HTTP range requests is what GDAL's
``/vsigs/`` and the server's lookup ask for with ``CPL_GS_ENDPOINT`` pointing at it and
``GS_NO_SIGN_REQUEST=YES`` (GCS's XML API for public objects). Tiles equal the local
file's; another bucket or a dot segment is 403 with no request reaching nginx; a missing
object is 404. Signed GCS requests (HMAC keys) have no local endpoint here and are not
tested."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.plugins.remote_http import RemoteHTTP
from tests.plugins.server import ServerPool

SCENE = "landsat8/LC08_L1TP_224078_20200518_rgb8.tif"
BUCKET, OTHER_BUCKET = "hndsr-gcs", "hndsr-gcs-other"
NATIVE_TILE = "/cog/tiles/WebMercatorQuad/12/1427/2346.png"
SR_TILE = "/cog/tiles/WebMercatorQuad/14/5710/9384.png"


@pytest.fixture(scope="module")
def setup(
    sample_scene: Path, remote_http: RemoteHTTP, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    """The scene locally and in two "buckets" under nginx's root; a server whose GCS
    endpoint is nginx, allowing the data dir and ``gs://hndsr-gcs/cogs/`` only."""
    root = tmp_path_factory.mktemp("gcs")
    data = root / "data"
    data.mkdir()
    local = data / "scene.tif"
    shutil.copy(sample_scene / SCENE, local)
    for bucket in (BUCKET, OTHER_BUCKET):
        (remote_http.root / bucket / "cogs").mkdir(parents=True)
        shutil.copy(local, remote_http.root / bucket / "cogs" / "scene.tif")
    pool = ServerPool(root / "servers")
    url = pool.start(
        {
            "HNDSR_DATA_DIR": str(data),
            "HNDSR_ALLOWED_SOURCES": f"{data},gs://{BUCKET}/cogs/",
            "CPL_GS_ENDPOINT": f"{remote_http.nginx.url}/",
            "GS_NO_SIGN_REQUEST": "YES",
            "HNDSR_REMOTE_TIMEOUT_S": "5",
            "HNDSR_REMOTE_MAX_RETRY": "0",
        }
    )
    yield {"url": url, "local": str(local)}
    pool.close()


def get(setup: dict, path: str, source: str, **params: str) -> httpx.Response:
    return httpx.get(f"{setup['url']}{path}", params={"url": source, **params}, timeout=60)


@pytest.mark.parametrize(
    "spelling", [f"gs://{BUCKET}/cogs/scene.tif", f"/vsigs/{BUCKET}/cogs/scene.tif"]
)
def test_gcs_cog_equals_the_local_file(setup, remote_http, spelling):
    for path, sr in ((NATIVE_TILE, "auto"), (SR_TILE, "bicubic")):
        local = get(setup, path, setup["local"], sr=sr)
        remote = get(setup, path, spelling, sr=sr)
        assert remote.status_code == 200, remote.text
        assert remote.headers["x-sr-mode"] == local.headers["x-sr-mode"]
        assert remote.content == local.content, path
    reads = remote_http.nginx.log_lines(f"GET /{BUCKET}/cogs/scene.tif")
    assert any("GDAL/" in line for line in reads)  # GDAL's /vsigs/ read it from nginx


@pytest.mark.parametrize(
    "source",
    [
        f"gs://{OTHER_BUCKET}/cogs/scene.tif",
        f"/vsigs/{OTHER_BUCKET}/cogs/scene.tif",
        f"gs://{BUCKET}/cogs/../scene.tif",
        f"gs://{BUCKET}/other/scene.tif",
    ],
)
def test_gcs_outside_the_allowlist_is_refused_before_any_request(setup, remote_http, source):
    before = len(remote_http.nginx.access_log.read_text().splitlines())
    response = get(setup, NATIVE_TILE, source)
    assert response.status_code == 403, response.text
    assert response.json() == {"detail": "source not allowed"}
    assert len(remote_http.nginx.access_log.read_text().splitlines()) == before


def test_a_missing_gcs_object_is_404(setup):
    response = get(setup, NATIVE_TILE, f"gs://{BUCKET}/cogs/missing.tif")
    assert response.status_code == 404, response.text
    assert response.json() == {"detail": "dataset not found"}
