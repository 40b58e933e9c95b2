"""The foundation seam test with the shipped HNDSR model: four 256-px tiles at zoom z,
stitched, equal the 512-px tile at z-1 (<= 2 DN), for `fast` and `diffusion`."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from sr_engine import load_model
from tests.test_server_seams import CASES, seam_data, seam_difference  # noqa: F401 (fixture)
from tileserver.app import create_app
from tileserver.settings import Settings


@pytest.fixture(scope="module")
def shipped_client(seam_data, tmp_path_factory):  # noqa: F811
    # no latency budget: this test is about pixels, not admission control on a busy machine
    settings = Settings(
        data_dir=seam_data, cache_dir=tmp_path_factory.mktemp("cache"), sr_latency_budget_ms=0
    )
    with TestClient(create_app(settings, upscaler=load_model(device="cpu"))) as client:
        yield client


def fetcher(client: TestClient, path: Path, mode: str):
    def fetch(z: int, x: int, y: int, tilesize: int):
        response = client.get(
            f"/cog/tiles/WebMercatorQuad/{z}/{x}/{y}.png",
            params={"url": str(path), "tilesize": tilesize, "sr": mode},
        )
        assert response.status_code == 200, response.text
        return np.asarray(Image.open(io.BytesIO(response.content))), dict(response.headers)

    return fetch


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fast", "diffusion"])
@pytest.mark.parametrize(("name", "z"), CASES)
def test_shipped_model_tiles_have_no_seams(shipped_client, seam_data, name, z, mode):  # noqa: F811
    path = seam_data / name
    worst, headers = seam_difference(fetcher(shipped_client, path, mode), path, z)
    assert headers["x-sr-mode"] == mode
    assert headers["x-sr-model"].startswith("hndsr-")
    assert worst <= 2
