"""Dataset sources as users spell them, parsed into one normalised form.

``parse_source`` turns a ``url`` query value (local path, ``file://``, ``http(s)://``,
``s3://``, ``gs://``, ``/vsicurl/...``, ``/vsis3/...``, ``/vsigs/...``) into a ``Source``:
scheme, host (the bucket for object stores), port, percent-decoded path with no dot
segments, and the query of HTTP URLs. Everything that could make the path GDAL reads
differ from the path that was checked is refused (``SourceNotAllowedError``): encoded
separators (``%2f``, ``%5c``), backslashes, ``.``/``..`` segments before or after decoding,
a second level of percent-encoding, user info in URLs, control characters, inline XML,
``.vrt`` files and every other ``/vsi*`` prefix or scheme.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from tileserver.errors import SourceNotAllowedError

HTTP_SCHEMES = ("http", "https")
OBJECT_STORE_SCHEMES = ("s3", "gs")
DEFAULT_PORTS = {"http": 80, "https": 443}
VSI_SPELLINGS = {"/vsis3/": "s3", "/vsigs/": "gs"}
"""GDAL prefixes users write for object stores, mapped to their URL scheme."""

_ENCODED_SEPARATOR = re.compile(r"%(2f|5c)", re.IGNORECASE)
_PERCENT_ESCAPE = re.compile(r"%[0-9a-fA-F]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SAFE_PATH_CHARS = "/:@!$&'()*+,;=-._~"


@dataclass(frozen=True, slots=True)
class Source:
    """A normalised dataset source: what the allowlist matches and what GDAL opens.

    ``scheme`` is ``file``, ``http``, ``https``, ``s3`` or ``gs``; ``host`` is the lower-cased
    host name (the bucket for ``s3``/``gs``, empty for files); ``port`` the explicit or
    default port of HTTP URLs (0 otherwise); ``path`` the decoded absolute path (the
    resolved file path, or ``/key`` of an object); ``query`` the raw query of HTTP URLs.
    """

    scheme: str
    host: str = ""
    port: int = 0
    path: str = "/"
    query: str = ""

    @property
    def is_remote(self) -> bool:
        """True for HTTP(S) and object-store sources."""
        return self.scheme != "file"

    @property
    def netloc(self) -> str:
        """``host[:port]``, the port only where it is not the scheme's default."""
        if self.scheme in HTTP_SCHEMES and self.port != DEFAULT_PORTS[self.scheme]:
            return f"{self.host}:{self.port}"
        return self.host

    @property
    def url(self) -> str:
        """The canonical spelling: a file path, or a URL that rasterio hands to GDAL."""
        if self.scheme == "file":
            return self.path
        if self.scheme in HTTP_SCHEMES:
            query = f"?{self.query}" if self.query else ""
            return f"{self.scheme}://{self.netloc}{quote(self.path, safe=_SAFE_PATH_CHARS)}{query}"
        return f"{self.scheme}://{self.host}{self.path}"

    @property
    def gdal_path(self) -> str:
        """The path GDAL opens (``/vsicurl/URL``, ``/vsis3/bucket/key``, ...)."""
        if self.scheme in HTTP_SCHEMES:
            return f"/vsicurl/{self.url}"
        if self.scheme in OBJECT_STORE_SCHEMES:
            return f"/vsi{self.scheme}/{self.host}{self.path}"
        return self.path

    def under(self, prefix: Source) -> bool:
        """True when this source lies under ``prefix`` (same scheme, host, port; path prefix
        on a segment boundary)."""
        if (self.scheme, self.host, self.port) != (prefix.scheme, prefix.host, prefix.port):
            return False
        root = prefix.path.rstrip("/")
        return self.path == root or self.path.startswith(root + "/") or root == ""


def _refuse_if(condition: bool) -> None:
    if condition:
        raise SourceNotAllowedError()


def _clean_remote_path(raw: str, decode: bool) -> str:
    """The decoded (HTTP) or literal (object key) path, refusing every ambiguous spelling."""
    _refuse_if(bool(_ENCODED_SEPARATOR.search(raw)) or "\\" in raw)
    try:
        decoded = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise SourceNotAllowedError() from None
    for candidate in (raw, decoded):
        segments = candidate.split("/")
        _refuse_if(any(segment in (".", "..") for segment in segments))
    path = decoded if decode else raw
    # what is still an escape after decoding would be decoded by the next server in line
    _refuse_if(decode and bool(_PERCENT_ESCAPE.search(path)))
    _refuse_if("\\" in decoded or bool(_CONTROL.search(decoded)))
    path = "/" + re.sub("/{2,}", "/", path).lstrip("/")
    _refuse_if("/vsi" in path.lower())
    return path


def _parse_http(text: str) -> Source:
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise SourceNotAllowedError() from None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    _refuse_if(not host or "@" in parts.netloc or "%" in host)
    path = _clean_remote_path(parts.path or "/", decode=True)
    return Source(scheme, host, port or DEFAULT_PORTS[scheme], path, parts.query)


def _parse_object(scheme: str, bucket: str, key: str) -> Source:
    _refuse_if(not re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,221}[a-z0-9]", bucket))
    return Source(scheme, bucket, 0, _clean_remote_path(key or "/", decode=False))


def _parse_local(text: str) -> Source:
    # other schemes and GDAL connection strings (WMS:..., GTIFF_RAW:...) are refused
    _refuse_if(":" in text.split("/", 1)[0] or text.lower().startswith("/vsi"))
    resolved = str(Path(text).expanduser().resolve())
    _refuse_if(resolved.lower().startswith("/vsi"))
    return Source("file", path=resolved)


def parse_source(value: str) -> Source:
    """The normalised ``Source`` of a user-supplied dataset URL or path.

    Raises ``SourceNotAllowedError`` for every spelling that is refused whatever the allowlist.
    """
    text = value.strip()
    _refuse_if(not text or text.startswith("<") or bool(_CONTROL.search(text)))
    lower = text.lower()
    if lower.startswith("/vsicurl/"):
        text = text[len("/vsicurl/") :]
        _refuse_if(urlsplit(text).scheme.lower() not in HTTP_SCHEMES)
        lower = text.lower()
    for prefix, scheme in VSI_SPELLINGS.items():
        if lower.startswith(prefix):
            bucket, _, key = text[len(prefix) :].partition("/")
            source = _parse_object(scheme, bucket, "/" + key)
            break
    else:
        scheme = urlsplit(text).scheme.lower() if "://" in text else ""
        if scheme in HTTP_SCHEMES:
            source = _parse_http(text)
        elif scheme in OBJECT_STORE_SCHEMES:
            parts = urlsplit(text)
            _refuse_if(bool(parts.query or parts.fragment))
            source = _parse_object(scheme, parts.netloc, parts.path)
        elif scheme == "file":
            source = _parse_local(unquote(urlsplit(text).path))
        else:
            _refuse_if(bool(scheme))
            source = _parse_local(text)
    _refuse_if(posixpath.splitext(source.path)[1].lower() == ".vrt")
    return source


def parse_prefix(value: str) -> Source:
    """An allowlist entry (``HNDSR_ALLOWED_SOURCES`` item) in the same normalised form."""
    text = value.strip()
    if "://" not in text and not text.lower().startswith("/vsi"):
        return Source("file", path=str(Path(text).expanduser().resolve()))
    return parse_source(text)
