"""Source allowlist: which datasets and STAC items may be opened, checked before any open.

Entries (``HNDSR_ALLOWED_SOURCES``) are local folders, ``http(s)://host[:port]/prefix``,
``s3://bucket/prefix`` or ``gs://bucket/prefix``. A source is parsed into its normalised
form (``tileserver.sources``: percent-decoded, dot segments and encoded separators refused,
``/vsicurl/``/``/vsis3/``/``/vsigs/`` spellings mapped to their URLs) and must lie under an
entry with the same scheme, exact host (bucket) and port, on a path-segment boundary.
Local paths are resolved (symlinks, ``..``) first.

API for the routes and readers (all raise the typed errors of ``tileserver.errors``):

- ``Allowlist.check(url) -> str``: the canonical URL/path to open; no I/O. 403
  (``SourceNotAllowedError``) for anything outside the allowlist.
- ``Allowlist.source(url) -> Source``: the same check, returning the parsed form.
- ``Allowlist.check_existing(url) -> str``: ``check``, then, before GDAL opens anything, a
  local file must exist (404) and a remote object is looked up (``tileserver.remote``):
  HTTP redirects followed hop by hop, every hop checked (403), missing object 404, slow
  remote 504, unreachable 502. Returns the final URL, which GDAL opens.
- ``Allowlist.remote_identity(url) -> (url, version)``: the cache key's dataset fields of a
  remote source (its ETag or Last-Modified; a replaced object gets new keys).
- ``Allowlist.fetch_json(url) -> dict``: a JSON document (STAC item, MosaicJSON) fetched
  the same way.
- ``Allowlist.allows_egress(host, port) -> bool``: where GDAL may connect
  (``tileserver.egress_guard`` refuses every other connection GDAL makes, redirects included).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tileserver.errors import DatasetNotFoundError, SourceNotAllowedError
from tileserver.remote import RemoteObjects, cloud_host, object_store_endpoints
from tileserver.sources import Source, parse_prefix, parse_source


class Allowlist:
    """Allowed local folders, HTTP(S) URL prefixes and object-store prefixes."""

    def __init__(self, prefixes: list[str], remote: RemoteObjects | None = None) -> None:
        self.entries: list[Source] = [parse_prefix(prefix) for prefix in prefixes]
        self.remote = remote or RemoteObjects()
        self.remote.check_hop = self.source

    @property
    def folders(self) -> list[str]:
        """The allowed local folders (resolved)."""
        return [entry.path for entry in self.entries if not entry.is_remote]

    def source(self, url: str) -> Source:
        """The normalised source of ``url``; ``SourceNotAllowedError`` unless allowed."""
        source = parse_source(url)
        if not any(source.under(entry) for entry in self.entries):
            raise SourceNotAllowedError()
        return source

    def check(self, url: str) -> str:
        """The canonical path or URL of an allowed ``url`` (no I/O)."""
        return self.source(url).url

    def check_existing(self, url: str) -> str:
        """``check``, then the existing file or the final URL of the remote object."""
        source = self.source(url)
        if not source.is_remote:
            if not Path(source.path).is_file():
                raise DatasetNotFoundError()
            return source.url
        return self.remote.lookup(source).source.url

    def remote_identity(self, url: str) -> tuple[str, str]:
        """``(canonical url, version)`` of an allowed remote source for cache keys: the
        version names the final URL after redirects and its ETag (else Last-Modified and
        length), looked up at most once per ``remote.ttl_s``."""
        source = self.source(url)
        found = self.remote.lookup(source)
        final = "" if found.source == source else f"{found.source.url};"
        return source.url, final + found.version

    def remote_version(self, url: str) -> str:
        """The version part of ``remote_identity``; empty where it cannot be looked up."""
        try:
            return self.remote_identity(url)[1]
        except Exception:
            return ""

    def fetch_json(self, url: str) -> dict[str, Any]:
        """A JSON document (STAC item) from an allowed source, every redirect hop checked."""
        source = self.source(url)
        if not source.is_remote:
            if not Path(source.path).is_file():
                raise DatasetNotFoundError()
            with open(source.path, encoding="utf-8") as fh:
                return json.load(fh)
        return json.loads(self.remote.fetch(source))

    def allows_egress(self, host: str, port: int) -> bool:
        """Whether GDAL may connect to ``host:port``: an HTTP(S) entry's host and port, or the
        endpoint of an object store that has an entry (``tileserver.egress_guard``)."""
        host = host.lower().strip("[]")
        for entry in self.entries:
            if entry.scheme in ("http", "https") and (entry.host, entry.port) == (host, port):
                return True
        for scheme in {e.scheme for e in self.entries if e.scheme in ("s3", "gs")}:
            endpoints = object_store_endpoints(scheme)
            if (host, port) in endpoints or (not endpoints and cloud_host(scheme, host, port)):
                return True
        return False
