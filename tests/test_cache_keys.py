"""Cache keys: which request parts count, how they are normalized, and how purge reads them."""

from __future__ import annotations

from pathlib import Path

from cache.keys import (
    TILE_PARAMS,
    dataset_hash,
    normalize_url,
    parse_key,
    parse_tile_request,
    tile_cache_key,
)
from tileserver.app import create_app
from tileserver.settings import Settings

PATH = "/cog/tiles/WebMercatorQuad/15/100/200.png"


def key(query: str, model: str = "m1", version: str = "size=1;mtime=2") -> str:
    request = parse_tile_request(PATH, query)
    assert request is not None
    return tile_cache_key(request, normalize_url(request.url), version, model)


def test_every_query_parameter_of_the_tile_routes_is_in_the_key(tmp_path: Path) -> None:
    spec = create_app(Settings(data_dir=tmp_path, cache_dir=tmp_path / "c")).openapi()
    for endpoint in ("cog", "stac"):
        operation = spec["paths"][f"/{endpoint}/tiles/{{tileMatrixSetId}}/{{z}}/{{x}}/{{y}}"]
        names = {p["name"] for p in operation["get"]["parameters"] if p["in"] == "query"}
        assert names - {"url", "tilesize", "sr", "format"} <= TILE_PARAMS, endpoint


def test_foreign_parameters_and_order_are_ignored_but_values_are_not() -> None:
    base = key("url=/d/a.tif&bidx=1&bidx=2&rescale=0,255")
    assert key("rescale=0,255&service=WMTS&version=1.0.0&url=/d/a.tif&bidx=1&bidx=2") == base
    assert key("url=/d/a.tif&bidx=2&bidx=1&rescale=0,255") != base  # band order matters
    assert key("url=/d/a.tif&bidx=1&bidx=2&rescale=0,200") != base
    assert key("url=/d/a.tif&bidx=1&bidx=2&rescale=0,255&tilesize=256") == base  # the default
    assert key("url=/d/a.tif&bidx=1&bidx=2&rescale=0,255&tilesize=512") != base
    assert key("url=/d/a.tif&bidx=1&bidx=2&rescale=0,255&sr=fast") != base
    assert key("url=/d/./a.tif&bidx=1&bidx=2&rescale=0,255") == base  # normalized path


def test_source_version_model_and_format_are_in_the_key() -> None:
    base = key("url=/d/a.tif")
    assert key("url=/d/a.tif", version="size=1;mtime=3") != base
    assert key("url=/d/a.tif", model="m2") != base
    request = parse_tile_request(PATH.replace(".png", ".webp"), "url=/d/a.tif")
    assert request is not None
    assert tile_cache_key(request, "/d/a.tif", "size=1;mtime=2", "m1") != base
    no_extension = parse_tile_request(PATH.removesuffix(".png"), "url=/d/a.tif&format=png")
    assert no_extension is not None and no_extension.fmt == "png"


def test_keys_carry_what_purge_selects_on() -> None:
    parts = parse_key(key("url=/d/a.tif", model="fast:v2"))
    assert parts is not None
    assert (parts.model_version, parts.z, parts.x, parts.y) == ("fast_v2", 15, 100, 200)
    assert parts.dataset == dataset_hash("/d/a.tif")
    assert parse_key("hndsr:prewarm") is None


def test_urls_are_normalized_by_scheme_host_and_default_port() -> None:
    assert normalize_url("HTTPS://Example.COM:443/a.tif") == "https://example.com/a.tif"
    assert normalize_url("http://example.com:8080/a.tif") == "http://example.com:8080/a.tif"
    assert normalize_url("file:///d/../d/a.tif") == "/d/a.tif"
    assert parse_tile_request(PATH, "bidx=1") is None  # no dataset: not a cacheable tile
