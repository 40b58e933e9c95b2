"""The web map's footprint test (web_map/src/footprint.js, run by Node) agrees with the
server's ``tile_exists`` on every tile around the sample scene, so that the page never asks
for a tile the server answers 404 (browsers log those as console errors) and skips none
that has data."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import morecantile
import pytest
from rio_tiler.io import Reader

ROOT = Path(__file__).resolve().parents[1]
FOOTPRINT_JS = ROOT / "web_map" / "src" / "footprint.js"
NODE_CHECK = """
import { overlapsFootprint } from %s;
import { readFileSync } from "node:fs";
const { geometry, tiles } = JSON.parse(readFileSync(process.argv[2], "utf8"));
process.stdout.write(JSON.stringify(tiles.map((b) => overlapsFootprint(geometry, b))));
"""


def node_overlaps(tmp_path: Path, geometry: dict | None, tiles: list[list[float]]) -> list[bool]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing: scripts/system-deps.sh installs it")
    script = tmp_path / "check.mjs"
    script.write_text(NODE_CHECK % json.dumps(FOOTPRINT_JS.as_uri()))
    data = tmp_path / "tiles.json"
    data.write_text(json.dumps({"geometry": geometry, "tiles": tiles}))
    result = subprocess.run(
        [node, str(script), str(data)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_footprint_matches_server_tile_exists_on_the_sample_scene(
    sample_scene: Path, tmp_path: Path
) -> None:
    item = next((sample_scene / "landsat8").glob("*_rgb8.json"))
    cog = item.with_suffix(".tif")
    geometry = json.loads(item.read_text())["geometry"]
    tms = morecantile.tms.get("WebMercatorQuad")
    bounds, expected = [], []
    with Reader(str(cog)) as src:
        west, south, east, north = src.get_geographic_bounds("epsg:4326")
        for tile in tms.tiles(west, south, east, north, list(range(9, 15))):
            box = tms.bounds(tile)
            bounds.append([box.left, box.bottom, box.right, box.top])
            expected.append(src.tile_exists(tile.x, tile.y, tile.z))
    assert not all(expected), "every bbox tile exists: the test would not tell anything"
    got = node_overlaps(tmp_path, geometry, bounds)
    wrong = [(b, e) for b, e, g in zip(bounds, expected, got, strict=True) if e != g]
    assert not wrong, f"{len(wrong)} of {len(bounds)} tiles disagree, e.g. {wrong[:3]}"


def test_without_a_footprint_every_tile_in_the_bounding_box_is_fetched(tmp_path: Path) -> None:
    assert node_overlaps(tmp_path, None, [[0, 0, 1, 1]]) == [True]


def test_polygon_with_a_hole(tmp_path: Path) -> None:
    outer = [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]
    hole = [[4, 4], [6, 4], [6, 6], [4, 6], [4, 4]]
    geometry = {"type": "Polygon", "coordinates": [outer, hole]}
    tiles = [[4.5, 4.5, 5.5, 5.5], [3, 3, 7, 7], [11, 11, 12, 12], [-1, -1, 0.5, 0.5]]
    assert node_overlaps(tmp_path, geometry, tiles) == [False, True, False, True]
