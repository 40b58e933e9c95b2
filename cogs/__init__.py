"""Sample data and COG tooling; imports none of the other packages.

What it offers the others (the server's CLI, training, benchmarks) is below.
"""

from __future__ import annotations

from cogs.cli import DEFAULT_CACHE_DIR, sample_data
from cogs.mosaic import mosaic_app, mosaic_footprints
from cogs.sample_scene import RGB8, build_sample_scene, scene_dir

__all__ = [
    "DEFAULT_CACHE_DIR",
    "RGB8",
    "build_sample_scene",
    "mosaic_app",
    "mosaic_footprints",
    "sample_data",
    "scene_dir",
]
