"""The web map that ``scripts/build-web-map.sh`` builds into ``web_map/`` here, served at ``/``.

``mount_web_map(app)`` must come after every other route (a mount at ``/`` takes every path
no earlier route took). The folder is looked up per request, so a server started before the
build serves the map once it is built; until then ``/`` answers 503 with the build command.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

WEB_MAP_DIR = Path(__file__).parent / "web_map"

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hndsr-tiles: web map not built</title></head>
<body><h1>The web map is not built</h1>
<p>Build it with <code>scripts/build-web-map.sh</code> (or <code>make web-map</code>; needs npm),
then reload. The tile endpoints work without it: <a href="/catalog">/catalog</a>,
<a href="/docs">/docs</a>.</p></body></html>
"""


def web_map_page(directory: Path = WEB_MAP_DIR) -> Response:
    """The web map's ``index.html``, or the how-to-build page (503) before it is built."""
    index = directory / "index.html"
    if not index.is_file():
        return HTMLResponse(NOT_BUILT, status_code=503)
    return FileResponse(index, media_type="text/html")


class WebMap:
    """ASGI app: the built folder through ``StaticFiles(html=True)``, or the how-to-build page."""

    def __init__(self, directory: Path = WEB_MAP_DIR) -> None:
        self.directory = directory
        self.files = StaticFiles(directory=directory, html=True, check_dir=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not (self.directory / "index.html").is_file():
            await web_map_page(self.directory)(scope, receive, send)
            return
        await self.files(scope, receive, send)


def mount_web_map(app: FastAPI, directory: Path = WEB_MAP_DIR) -> None:
    """Serve the web map at ``/``."""
    app.mount("/", WebMap(directory), name="web_map")
