"""The allowlist's normalisation and matching, spelling by spelling (no I/O); the same
probes through a real server are in test_server_remote.py and test_server_security.py."""

from __future__ import annotations

import pytest

from tileserver.errors import SourceNotAllowedError
from tileserver.security import Allowlist

ENTRIES = [
    "/srv/data",
    "http://Cogs.Example:8080/cogs/",
    "s3://bucket/cogs",
    "https://example.com/",
]

ALLOWED = {
    "http://cogs.example:8080/cogs/a.tif": "http://cogs.example:8080/cogs/a.tif",
    "HTTP://COGS.EXAMPLE:8080/cogs//a.tif": "http://cogs.example:8080/cogs/a.tif",
    "http://cogs.example:8080/cogs/a%20b.tif": "http://cogs.example:8080/cogs/a%20b.tif",
    "http://cogs.example:8080/cogs/a.tif?sig=1%2F2": "http://cogs.example:8080/cogs/a.tif?sig=1%2F2",
    "/vsicurl/http://cogs.example:8080/cogs/a.tif": "http://cogs.example:8080/cogs/a.tif",
    "https://EXAMPLE.com:443/x.tif": "https://example.com/x.tif",
    "s3://bucket/cogs/k.tif": "s3://bucket/cogs/k.tif",
    "/vsis3/bucket/cogs/k.tif": "s3://bucket/cogs/k.tif",
    "/srv/data/x.tif": "/srv/data/x.tif",
    "file:///srv/data/x.tif": "/srv/data/x.tif",
}

REFUSED = [
    "http://cogs.example:8080/cogs/%2e%2e/other/x.tif",  # encoded dot segment
    "http://cogs.example:8080/cogs/.%2E/other/x.tif",
    "http://cogs.example:8080/cogs/..%2fother/x.tif",  # encoded separator
    "http://cogs.example:8080/cogs/a%5c..%5cb.tif",
    "http://cogs.example:8080/cogs/a\\..\\b.tif",
    "http://cogs.example:8080/cogs/../other/x.tif",
    "http://cogs.example:8080/cogs/./a.tif",
    "http://cogs.example:8080/cogs/%252e%252e/other/x.tif",  # double encoding
    "http://cogs.example:8080/other/x.tif",  # outside the prefix
    "http://cogs.example:8080/cogsx/a.tif",  # not on a segment boundary
    "http://cogs.example:8081/cogs/a.tif",  # another port
    "http://cogs.example/cogs/a.tif",  # the default port is another port
    "https://cogs.example:8080/cogs/a.tif",  # another scheme
    "http://cogs.example:8080@evil.example/cogs/a.tif",  # user info
    "http://evil.example#@cogs.example:8080/cogs/a.tif",
    "/vsicurl/http://evil.example/cogs/a.tif",
    "/vsicurl/file:///srv/data/x.tif",
    "/vsicurl?url=http://cogs.example:8080/cogs/a.tif",
    "s3://other/cogs/k.tif",
    "/vsis3/other/cogs/k.tif",
    "s3://bucket/cogs/../k.tif",
    "s3://bucket/cogsx/k.tif",
    "s3://bucket/cogs/k.tif?versionId=1",
    "gs://bucket/cogs/k.tif",  # no gs entry
    "/vsigs/bucket/cogs/k.tif",
    "/vsiaz/bucket/cogs/k.tif",
    "/vsizip//srv/data/x.zip/x.tif",
    "https://example.com/x.vrt",
    "https://example.com/a/vsicurl/x.tif",
    "https://example.com/x.tif\r\nHost: evil",
    "<VRTDataset/>",
    "WMS:http://cogs.example:8080/cogs/",
    "ftp://example.com/x.tif",
    "",
]


@pytest.fixture(scope="module")
def allowlist() -> Allowlist:
    return Allowlist(ENTRIES)


@pytest.mark.parametrize("url", ALLOWED)
def test_allowed_spellings_normalise_to_one_form(allowlist: Allowlist, url: str) -> None:
    assert allowlist.check(url) == ALLOWED[url]


@pytest.mark.parametrize("url", REFUSED)
def test_refused_spellings(allowlist: Allowlist, url: str) -> None:
    with pytest.raises(SourceNotAllowedError):
        allowlist.check(url)


def test_gdal_paths_of_sources(allowlist: Allowlist) -> None:
    assert allowlist.source("s3://bucket/cogs/k.tif").gdal_path == "/vsis3/bucket/cogs/k.tif"
    http = allowlist.source("http://cogs.example:8080/cogs/a%20b.tif")
    assert http.gdal_path == "/vsicurl/http://cogs.example:8080/cogs/a%20b.tif"


def test_egress_follows_the_http_entries_and_object_store_endpoints(monkeypatch) -> None:
    monkeypatch.delenv("AWS_S3_ENDPOINT", raising=False)
    allowlist = Allowlist(ENTRIES)
    assert allowlist.allows_egress("cogs.example", 8080)
    assert allowlist.allows_egress("example.com", 443)
    assert not allowlist.allows_egress("cogs.example", 80)
    assert not allowlist.allows_egress("127.0.0.1", 8080)
    assert allowlist.allows_egress("bucket.s3.eu-west-1.amazonaws.com", 443)  # AWS's own
    assert not allowlist.allows_egress("storage.googleapis.com", 443)  # no gs entry
    monkeypatch.setenv("AWS_S3_ENDPOINT", "127.0.0.1:9000")
    assert allowlist.allows_egress("127.0.0.1", 9000)
    assert not allowlist.allows_egress("bucket.s3.amazonaws.com", 443)
    assert not Allowlist(["/srv/data"]).allows_egress("example.com", 443)
