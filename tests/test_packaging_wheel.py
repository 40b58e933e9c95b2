"""The wheel as a user installs it: ``python -m build``, a fresh venv with only torch and the
wheel (no dev extra), ``hndsr-tiles sample-data`` and ``hndsr-tiles serve`` in an empty
folder, then headless Chromium opens ``/`` and sees SR tiles.

Slow (a build and a venv install, about two minutes with pip's cache warm); CI runs it.
torch comes from the pinned CPU wheel as in the Makefile, never a CUDA build.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.plugins.server import free_port
from tests.test_web_map_browser import (
    VIEWPORT,
    PageWatch,
    build_web_map,
    launch_chromium,
    wait_for_tiles,
)

ROOT = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # a venv install on a busy machine


def user_env(path: Path | None = None) -> dict[str, str]:
    """The environment of a user's shell: none of this checkout's settings or import paths."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HNDSR_", "PYTHONPATH"))}
    if path is not None:
        env["PATH"] = f"{path}:{env.get('PATH', '')}"
    return env


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    env = env or user_env()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{command}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``python -m build`` makes from this checkout (web map built first)."""
    build_web_map()
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out)], ROOT, dict(os.environ))
    (built,) = out.glob("hndsr_tiles-*.whl")
    return built


@pytest.fixture(scope="session")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``bin/`` of a fresh venv with torch and the wheel installed (nothing else)."""
    venv = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", str(venv)], cwd=venv)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    run([*pip, TORCH], cwd=venv)
    run([*pip, str(wheel)], cwd=venv)
    return venv / "bin"


def test_the_wheel_ships_the_built_web_map(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    for built in ("index.html", "main.js", "main.css", "ol.html"):
        assert f"tileserver/static/web_map/{built}" in names, built


@pytest.fixture(scope="session")
def served(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``hndsr-tiles sample-data && hndsr-tiles serve`` in an empty folder, from the venv."""
    workdir = tmp_path_factory.mktemp("user")
    env = user_env(installed)
    run([str(installed / "hndsr-tiles"), "sample-data"], cwd=workdir, env=env)
    port = free_port()
    log = (workdir / "serve.log").open("wb")
    command = [str(installed / "hndsr-tiles"), "serve", "--port", str(port)]
    process = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert process.poll() is None, (workdir / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail(f"not healthy: {(workdir / 'serve.log').read_text()[-3000:]}")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_installed_server_shows_the_map_with_tiles(served: str, installed: Path) -> None:
    imported = run(
        [str(installed / "python"), "-c", "import tileserver; print(tileserver.__file__)"],
        cwd=installed,
    )
    assert str(ROOT) not in imported, f"the venv imports the checkout: {imported}"
    for browser in launch_chromium():
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        watch = PageWatch().attach(page)
        page.goto(f"{served}/", wait_until="load")
        page.wait_for_function("window.hndsr && hndsr.ready === true", timeout=60_000)
        zoom = page.evaluate("hndsr.map.getZoom()")
        wait_for_tiles(page, zoom)
        loaded = page.evaluate(
            "[...document.querySelectorAll('img.sr-tile')].filter("
            "(i) => i.complete && i.naturalWidth > 0).length"
        )
        assert loaded > 0, "no tile image loaded"
        assert watch.errors == [], "\n".join(watch.errors)
        context.close()
