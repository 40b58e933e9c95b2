"""The server starts on a broken disk cache: a corrupt one is moved aside, a full one leaves
the disk tier disabled and listed in /readyz ``degraded``; tiles are served either way."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.apps.http import TEST_APP, centre_tiles, tile_path


def _start(live_server, sample_scene: Path, cache_dir: Path) -> str:
    env = {"HNDSR_DATA_DIR": str(sample_scene), "HNDSR_CACHE_DIR": str(cache_dir)}
    return live_server(env, app=TEST_APP)


def test_a_corrupt_disk_cache_is_moved_aside_and_the_server_starts(
    live_server, sample_scene: Path, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / "cache.db").write_bytes(b"SQLite format 3\x00" + b"\xff" * 8000)
    base = _start(live_server, sample_scene, cache_dir)
    assert "cache-disk" not in httpx.get(base + "/readyz", timeout=30).json()["degraded"]
    (aside,) = tmp_path.glob("cache.corrupt-*")
    assert (aside / "cache.db").read_bytes().startswith(b"SQLite format 3")
    path = tile_path(sample_scene, *centre_tiles(13, 1, skip=20)[0])
    assert httpx.get(base + path, timeout=60).status_code == 200
    assert httpx.get(base + path, timeout=60).headers["X-Cache"].startswith("HIT")


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs filled to the last byte (needs mount rights: root in CI)."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)])
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): the full-disk start is not tested")
    try:
        try:
            with open(mount / "filler", "wb") as fh:
                while True:
                    fh.write(b"\0" * 4096)
                    fh.flush()
        except OSError:
            pass  # full
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_cache_is_disabled_and_the_server_starts(
    live_server, sample_scene: Path, full_disk: Path
) -> None:
    base = _start(live_server, sample_scene, full_disk / "cache")
    ready = httpx.get(base + "/readyz", timeout=30).json()
    assert ready["status"] == "degraded" and "cache-disk" in ready["degraded"]
    path = tile_path(sample_scene, *centre_tiles(13, 1, skip=20)[0])
    assert httpx.get(base + path, timeout=60).status_code == 200
