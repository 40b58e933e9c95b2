"""The web map mount at ``/``: the built folder is served; without a build, ``/`` says how."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tileserver.static import mount_web_map


def app_with_web_map(directory: Path) -> FastAPI:
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    mount_web_map(app, directory)
    return app


def test_unbuilt_web_map_answers_503_with_the_build_command(tmp_path: Path) -> None:
    client = TestClient(app_with_web_map(tmp_path / "missing"))
    response = client.get("/")
    assert response.status_code == 503
    assert "scripts/build-web-map.sh" in response.text
    assert client.get("/healthz").json() == {"status": "ok"}


def test_built_web_map_is_served_at_root_with_its_assets(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>map</title>")
    (tmp_path / "main.js").write_text("console.log('map')")
    client = TestClient(app_with_web_map(tmp_path))
    root = client.get("/")
    assert root.status_code == 200 and "<title>map</title>" in root.text
    assert root.headers["content-type"].startswith("text/html")
    assert (
        client.get("/main.js")
        .headers["content-type"]
        .startswith(("text/javascript", "application/javascript"))
    )
    assert client.get("/no-such-file.js").status_code == 404
    assert client.get("/healthz").json() == {"status": "ok"}, "the mount shadowed a route"


def test_a_build_made_after_start_is_served_without_restart(tmp_path: Path) -> None:
    client = TestClient(app_with_web_map(tmp_path))
    assert client.get("/").status_code == 503
    (tmp_path / "index.html").write_text("<!doctype html><title>late</title>")
    assert client.get("/").status_code == 200
