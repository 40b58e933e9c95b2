"""Source allowlist: which datasets and STAC items may be opened, checked before any open.

Local paths are resolved (symlinks, ``..``) and must lie under an allowed folder; http(s)
URLs must match an allowed prefix by scheme, exact host and port, and path; GDAL virtual
file systems (``/vsi*``), ``.vrt`` files, inline XML and every other scheme are refused.
STAC items are fetched here (redirects checked hop by hop) and each asset href is checked.
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from tileserver.errors import DatasetNotFoundError, SourceNotAllowedError

MAX_REDIRECTS = 5
HTTP_SCHEMES = ("http", "https")


def _is_url(source: str) -> bool:
    return urlsplit(source).scheme.lower() in HTTP_SCHEMES


def _path_under(path: str, prefix: str, sep: str) -> bool:
    prefix = prefix.rstrip(sep)
    return path == prefix or path.startswith(prefix + sep)


class Allowlist:
    """Allowed local folders and URL prefixes."""

    def __init__(self, prefixes: list[str]) -> None:
        self.folders: list[str] = []
        self.urls: list[tuple[str, str, str]] = []
        for prefix in prefixes:
            if _is_url(prefix):
                parts = urlsplit(prefix)
                path = posixpath.normpath(parts.path or "/")
                self.urls.append((parts.scheme.lower(), parts.netloc.lower(), path))
            else:
                self.folders.append(str(Path(prefix).expanduser().resolve()))

    def check(self, source: str) -> str:
        """The source to open (resolved path or URL); ``SourceNotAllowedError`` otherwise."""
        text = source.strip()
        if not text or text.startswith("<") or "\x00" in text:
            raise SourceNotAllowedError()
        if text.lower().startswith("file://"):
            text = urlsplit(text).path
        if _is_url(text):
            return self._check_url(text)
        if ":" in text.split("/", 1)[0] or text.lower().startswith("/vsi"):
            raise SourceNotAllowedError()  # other schemes, GDAL prefixes (WMS:, /vsicurl/...)
        resolved = str(Path(text).expanduser().resolve())
        if resolved.lower().startswith("/vsi") or resolved.lower().endswith(".vrt"):
            raise SourceNotAllowedError()
        if not any(_path_under(resolved, folder, "/") for folder in self.folders):
            raise SourceNotAllowedError()
        return resolved

    def _check_url(self, url: str) -> str:
        parts = urlsplit(url)
        path = posixpath.normpath(parts.path or "/")
        if path.lower().endswith(".vrt") or "/vsi" in path.lower():
            raise SourceNotAllowedError()
        for scheme, netloc, prefix in self.urls:
            if (
                parts.scheme.lower() == scheme
                and parts.netloc.lower() == netloc
                and _path_under(path, prefix, "/")
            ):
                return url
        raise SourceNotAllowedError()

    def check_existing(self, source: str) -> str:
        """``check``, then 404 for an allowed local path that does not exist."""
        checked = self.check(source)
        if not _is_url(checked) and not Path(checked).is_file():
            raise DatasetNotFoundError()
        return checked

    def fetch_json(self, source: str, timeout: float = 10.0) -> dict[str, Any]:
        """Fetch a JSON document (STAC item), re-checking every redirect hop."""
        url = self.check_existing(source)
        if not _is_url(url):
            with open(url, encoding="utf-8") as fh:
                return json.load(fh)
        with httpx.Client(follow_redirects=False, timeout=timeout) as client:
            for _ in range(MAX_REDIRECTS + 1):
                response = client.get(url)
                if response.is_redirect:
                    url = self.check(urljoin(url, response.headers["location"]))
                    continue
                response.raise_for_status()
                return response.json()
        raise SourceNotAllowedError()
