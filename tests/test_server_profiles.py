"""The application's dataset-profile cache: one computation per file identity, a replaced
file gets a new profile, entries expire, remote sources are keyed by their version."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
from rio_tiler.io import Reader

from tests.apps.http import SCENE
from tileserver.profiles import ProfileCache


class CountingCache(ProfileCache):
    """A ``ProfileCache`` that counts how many profiles it computed."""

    computed = 0

    def get(self, reader, remote_version):  # type: ignore[no-untyped-def]
        before = len(self)
        profile = super().get(reader, remote_version)
        self.computed += len(self) > before
        return profile


def no_remote(path: str) -> str:
    raise AssertionError(f"a local file is keyed by its stat, not a remote version: {path}")


def test_a_profile_is_computed_once_per_file_identity(sample_scene: Path, tmp_path: Path) -> None:
    scene = tmp_path / "scene.tif"
    shutil.copy(sample_scene / SCENE, scene)
    cache = CountingCache()
    with Reader(str(scene)) as reader:
        first = cache.get(reader, no_remote)
        assert cache.get(reader, no_remote) is first
    assert cache.computed == 1
    assert first.band_min.tolist() == [0, 0, 0] and first.band_max.tolist() == [255] * 3
    assert not first.categorical and not first.continuous_single_band
    stat = scene.stat()
    os.utime(scene, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # "replaced"
    with Reader(str(scene)) as reader:
        cache.get(reader, no_remote)
    assert cache.computed == 2


def test_profiles_expire_and_remote_ones_are_keyed_by_version(sample_scene: Path) -> None:
    cache = ProfileCache(ttl_s=0.2)
    with Reader(str(sample_scene / SCENE)) as reader:
        reader.input = "https://example.invalid/scene.tif"  # not a file: keyed by version
        first = cache.get(reader, lambda path: "etag-1")
        assert cache.get(reader, lambda path: "etag-1") is first
        assert len(cache) == 1
        cache.get(reader, lambda path: "etag-2")  # the object was replaced
        assert len(cache) == 2
        time.sleep(0.3)
        assert len(cache) == 0  # expired: a remote object is profiled again
        again = cache.get(reader, lambda path: "etag-1")
    assert again is not first
    np.testing.assert_array_equal(again.band_max, first.band_max)
