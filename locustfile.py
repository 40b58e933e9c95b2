"""Load test of the tile server: a hot-tile user and a browsing user (locust, FastHttpUser).

    locust -f locustfile.py --host http://127.0.0.1:8000

Environment: ``LOAD_DATASET`` (the ``url`` the server opens; default: the sample scene under
``./data``), ``LOAD_CENTRE`` (``lon,lat``), ``LOAD_ZOOM`` (start zoom), ``LOAD_SR`` (SR mode).
On 2 cores locust itself saturates first: use wrk for hot-tile throughput
(``benchmarks/hot_tile_vs_nginx.py``) and locust for mixed behaviour.
"""

from __future__ import annotations

import itertools
import math
import os
import random

import gevent.pool
from locust import FastHttpUser, between, task

DATASET = os.environ.get("LOAD_DATASET", "data/landsat8/LC08_L1TP_224078_20200518_rgb8.tif")
LON, LAT = (float(v) for v in os.environ.get("LOAD_CENTRE", "-54.535,-25.34").split(","))
ZOOM = int(os.environ.get("LOAD_ZOOM", "13"))
SR = os.environ.get("LOAD_SR", "auto")
TILE = 256
VIEWPORT = (1920, 1080)
"""A desktop map view: 40-54 tiles of 256 px (44 on average) depending on the offset."""
BROWSER_CONNECTIONS = 6
"""Chrome's parallel requests per host over HTTP/1.1."""


def world_pixel(lon: float, lat: float, zoom: int) -> tuple[float, float]:
    """Web Mercator pixel coordinates of a point at ``zoom`` (256-px tiles)."""
    size = TILE * 2**zoom
    x = (lon + 180.0) / 360.0 * size
    sin = math.sin(math.radians(lat))
    y = (0.5 - math.log((1 + sin) / (1 - sin)) / (4 * math.pi)) * size
    return x, y


def tile_url(z: int, x: int, y: int) -> str:
    """The tile request, named by its route so locust groups the statistics."""
    return f"/cog/tiles/WebMercatorQuad/{z}/{x}/{y}.png?url={DATASET}&sr={SR}"


def spiral(cx: int, cy: int, count: int) -> list[tuple[int, int]]:
    """``count`` tiles ordered by distance from (cx, cy): the popularity ranks."""
    radius = math.isqrt(count) + 1
    cells = itertools.product(
        range(cx - radius, cx + radius + 1), range(cy - radius, cy + radius + 1)
    )
    return sorted(cells, key=lambda c: (c[0] - cx) ** 2 + (c[1] - cy) ** 2)[:count]


class HotTileUser(FastHttpUser):
    """Requests tiles around one point with Zipf popularity (s=1.1 over 200 tiles)."""

    weight = 3
    wait_time = between(0.0, 0.05)

    def on_start(self) -> None:
        px, py = world_pixel(LON, LAT, ZOOM)
        self.tiles = spiral(int(px // TILE), int(py // TILE), 200)
        self.cum_weights = list(itertools.accumulate(1 / rank**1.1 for rank in range(1, 201)))

    @task
    def hot_tile(self) -> None:
        ((x, y),) = random.choices(self.tiles, cum_weights=self.cum_weights)
        self.client.get(tile_url(ZOOM, x, y), name="tile (hot)")


class BrowsingUser(FastHttpUser):
    """Loads a full viewport, then pans or zooms, like a person with a web map."""

    weight = 1
    wait_time = between(1.0, 4.0)

    def on_start(self) -> None:
        self.zoom = ZOOM
        self.centre = world_pixel(LON, LAT, ZOOM)
        self.pool = gevent.pool.Pool(BROWSER_CONNECTIONS)

    def viewport(self) -> list[tuple[int, int]]:
        """Tiles covering the viewport around the current centre."""
        (cx, cy), (width, height) = self.centre, VIEWPORT
        cols = range(int((cx - width / 2) // TILE), int((cx + width / 2 - 1) // TILE) + 1)
        rows = range(int((cy - height / 2) // TILE), int((cy + height / 2 - 1) // TILE) + 1)
        return [(x, y) for x in cols for y in rows]

    def load_view(self) -> None:
        for x, y in self.viewport():
            self.pool.spawn(self.client.get, tile_url(self.zoom, x, y), name="tile (browse)")
        self.pool.join()

    @task(3)
    def pan(self) -> None:
        angle = random.uniform(0, 2 * math.pi)
        distance = random.uniform(0.2, 0.6) * VIEWPORT[0]
        cx, cy = self.centre
        self.centre = (cx + distance * math.cos(angle), cy + distance * math.sin(angle))
        self.load_view()

    @task(1)
    def zoom_step(self) -> None:
        step = (
            random.choice((-1, 1))
            if ZOOM - 2 < self.zoom < ZOOM + 4
            else (1 if self.zoom <= ZOOM - 2 else -1)
        )
        self.zoom += step
        self.centre = (self.centre[0] * 2**step, self.centre[1] * 2**step)
        self.load_view()
