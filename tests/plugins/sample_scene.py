"""Pytest fixtures: ``sample_scene``, the data dir holding the built Landsat 8 sample scene."""

from __future__ import annotations

from pathlib import Path

import pytest

from cogs.cli import DEFAULT_CACHE_DIR
from cogs.sample_scene import build_sample_scene


@pytest.fixture(scope="session")
def sample_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with ``landsat8/`` built once per session (sdist from the shared cache).

    Read-only for tests: copy it before changing anything.
    """
    data_dir = tmp_path_factory.mktemp("sample-data")
    build_sample_scene(data_dir, DEFAULT_CACHE_DIR)
    return data_dir
