"""Remote objects (HTTP(S), S3, GCS), looked up by the server before GDAL opens them.

``RemoteObjects.lookup(source)`` asks for the first byte (``Range: bytes=0-0``, headers
only) and follows HTTP redirects itself, hop by hop, each hop checked against the allowlist,
and answers the final source and its version (``ETag``, else
``Last-Modified`` and length), remembered for ``ttl`` seconds. S3 objects are looked up with
boto3 (``head_object``), configured from the same environment variables GDAL reads
(``AWS_S3_ENDPOINT``, ``AWS_HTTPS``, ``AWS_VIRTUAL_HOSTING``, ``AWS_REGION``,
``AWS_NO_SIGN_REQUEST``, credentials); GCS objects with the same request on the XML API
when they are public (``GS_NO_SIGN_REQUEST=YES``), or boto3 with HMAC keys.
Failures are typed: missing object (404/403/410 from the remote) ``DatasetNotFoundError``,
timeout ``RemoteTimeoutError`` (504), anything else ``RemoteUnavailableError`` (502).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin

import httpx

from tileserver.errors import (
    DatasetNotFoundError,
    RemoteTimeoutError,
    RemoteUnavailableError,
    SourceNotAllowedError,
)
from tileserver.gdal_cache import forget_remote
from tileserver.sources import Source

MAX_REDIRECTS = 5
PROBE = "PROBE"
"""The lookup request: ``GET`` of the first byte, headers only. Unlike ``HEAD`` it works
with URLs signed for ``GET`` only (S3 presigned URLs) and reaches servers the way GDAL's
reads do."""
PROBE_HEADERS = {"Range": "bytes=0-0"}
MISSING_STATUSES = (401, 403, 404, 410)
"""Remote answers that mean "no such object (for us)": all answered 404."""
GCS_ENDPOINT = "storage.googleapis.com"
MAX_REMEMBERED = 10_000


@dataclass(frozen=True, slots=True)
class RemoteObject:
    """The final (post-redirect) source of a remote object and its version string."""

    source: Source
    version: str


def _truthy(name: str, default: str = "NO") -> bool:
    return os.environ.get(name, default).strip().upper() in ("YES", "TRUE", "ON", "1")


def _endpoint(scheme: str) -> tuple[str, bool]:
    """``(host[:port], https)`` of the object store GDAL talks to for ``scheme``."""
    if scheme == "s3":
        return os.environ.get("AWS_S3_ENDPOINT", "s3.amazonaws.com"), _truthy("AWS_HTTPS", "YES")
    host = os.environ.get("CPL_GS_ENDPOINT", f"https://{GCS_ENDPOINT}/")
    https = not host.startswith("http://")
    return host.split("://", 1)[-1].rstrip("/"), https


def object_store_endpoints(scheme: str) -> set[tuple[str, int]]:
    """``(host, port)`` of the configured endpoint of ``s3`` or ``gs`` (empty for AWS's and
    Google's own endpoints, which ``cloud_host`` matches by name)."""
    netloc, https = _endpoint(scheme)
    if scheme == "s3" and "AWS_S3_ENDPOINT" not in os.environ:
        return set()
    if scheme == "gs" and "CPL_GS_ENDPOINT" not in os.environ:
        return set()
    host, _, port = netloc.partition(":")
    return {(host.lower(), int(port) if port else (443 if https else 80))}


def cloud_host(scheme: str, host: str, port: int) -> bool:
    """True for the cloud's own endpoints GDAL uses for ``scheme`` with default settings:
    ``*.amazonaws.com`` / ``*.googleapis.com`` on 443, and the instance metadata service
    (credentials)."""
    if (host, port) in (("169.254.169.254", 80), ("169.254.170.2", 80)):
        return True
    suffix = ".amazonaws.com" if scheme == "s3" else ".googleapis.com"
    return port == 443 and host.endswith(suffix)


class RemoteObjects:
    """Looks remote objects up (redirects checked hop by hop), remembering their versions.

    ``check_hop`` (set by the ``Allowlist``) parses and checks every redirect target.
    """

    def __init__(
        self,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        max_retry: int = 0,
        ttl_s: float = 10.0,
    ) -> None:
        self.timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s, pool=timeout_s)
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_retry = max_retry
        self.ttl_s = ttl_s
        self.check_hop: Callable[[str], Source] = _refuse_all
        self._known: dict[str, tuple[float, RemoteObject | Exception]] = {}
        self._lock = threading.Lock()
        self._versions: dict[str, RemoteObject] = {}
        self._clients: dict[str, Any] = {}
        # one pooled client (thread-safe); redirects are followed here, hop by hop
        self._http = httpx.Client(follow_redirects=False, timeout=self.timeout, trust_env=False)

    def lookup(self, source: Source) -> RemoteObject:
        """The final source and version of a remote object. Answers and failures (404,
        502, 504) are remembered for ``ttl_s``: the cache key's identity and the route's
        check share one lookup, and a dead remote costs one timeout per ``ttl_s``."""
        now = time.monotonic()
        with self._lock:
            known = self._known.get(source.url)
        if known is None or known[0] <= now:
            try:
                found: RemoteObject | Exception = self._lookup(source)
            except (DatasetNotFoundError, RemoteTimeoutError, RemoteUnavailableError) as exc:
                found = exc
            with self._lock:
                previous = self._versions.get(source.url)
                if isinstance(found, RemoteObject):
                    self._versions[source.url] = found
                known = (time.monotonic() + self.ttl_s, found)
                if len(self._known) >= MAX_REMEMBERED:
                    self._known.clear()
                    self._versions.clear()
                self._known[source.url] = known
            if isinstance(found, RemoteObject) and previous not in (None, found):
                forget_remote(found.source.gdal_path)  # replaced: GDAL's cached blocks are stale
        if isinstance(known[1], Exception):
            raise type(known[1])()
        return known[1]

    def _lookup(self, source: Source) -> RemoteObject:
        if source.scheme in ("http", "https"):
            return self._http_lookup(source)
        return self._object_lookup(source)

    def fetch(self, source: Source) -> bytes:
        """The body of a remote object (a JSON document), redirects checked hop by hop."""
        if source.scheme not in ("http", "https"):
            return self._object_body(source)
        return self._follow(source, "GET")[1].content

    # HTTP(S)

    def _follow(self, source: Source, method: str) -> tuple[Source, httpx.Response]:
        """The final source and its response to ``method``, after checked redirects."""
        for _ in range(MAX_REDIRECTS + 1):
            response = self._request(method, source.url)
            if response.is_redirect and "location" in response.headers:
                source = self.check_hop(urljoin(source.url, response.headers["location"]))
                continue
            _raise_for_status(response.status_code)
            return source, response
        raise SourceNotAllowedError()  # a redirect loop

    def _request(self, method: str, url: str) -> httpx.Response:
        """One request, retried ``max_retry`` times on 5xx and transport errors."""
        attempts = self.max_retry + 1
        for attempt in range(attempts):
            try:
                if method == PROBE:  # headers only: the body is never read
                    request = self._http.build_request("GET", url, headers=PROBE_HEADERS)
                    response = self._http.send(request, stream=True)
                    response.close()
                else:
                    response = self._http.request(method, url)
                if response.status_code < 500 or attempt == attempts - 1:
                    return response
            except httpx.TimeoutException:
                if attempt == attempts - 1:
                    raise RemoteTimeoutError() from None
            except httpx.TransportError:
                if attempt == attempts - 1:
                    raise RemoteUnavailableError() from None
        raise RemoteUnavailableError()

    def _http_lookup(self, source: Source) -> RemoteObject:
        final, response = self._follow(source, PROBE)
        return RemoteObject(final, _version(response.headers))

    # object stores

    def _object_lookup(self, source: Source) -> RemoteObject:
        if source.scheme == "gs" and _truthy("GS_NO_SIGN_REQUEST"):
            netloc, https = _endpoint("gs")
            url = f"{'https' if https else 'http'}://{netloc}/{source.host}{quote(source.path)}"
            response = self._request(PROBE, url)
            _raise_for_status(response.status_code)
            return RemoteObject(source, _version(response.headers))
        head = self._boto_call(source, "head_object")
        return RemoteObject(source, f"etag={head.get('ETag', '')};lm={head.get('LastModified')}")

    def _object_body(self, source: Source) -> bytes:
        return self._boto_call(source, "get_object")["Body"].read()

    def _boto_call(self, source: Source, operation: str) -> dict[str, Any]:
        import botocore.exceptions

        client = self._boto_client(source.scheme)
        try:
            return getattr(client, operation)(Bucket=source.host, Key=source.path.lstrip("/"))
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in ("NoSuchKey", "NoSuchBucket", "404", "403") or status in MISSING_STATUSES:
                raise DatasetNotFoundError() from None
            raise RemoteUnavailableError() from None
        except (botocore.exceptions.ConnectTimeoutError, botocore.exceptions.ReadTimeoutError):
            raise RemoteTimeoutError() from None
        except botocore.exceptions.BotoCoreError:
            raise RemoteUnavailableError() from None

    def _boto_client(self, scheme: str) -> Any:
        with self._lock:
            client = self._clients.get(scheme)
            if client is None:
                client = self._clients[scheme] = self._new_boto_client(scheme)
            return client

    def _new_boto_client(self, scheme: str) -> Any:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        netloc, https = _endpoint(scheme)
        unsigned = _truthy("AWS_NO_SIGN_REQUEST" if scheme == "s3" else "GS_NO_SIGN_REQUEST")
        virtual = _truthy("AWS_VIRTUAL_HOSTING", "TRUE") if scheme == "s3" else False
        config = Config(
            connect_timeout=self.connect_timeout_s,
            read_timeout=self.timeout_s,
            retries={"total_max_attempts": self.max_retry + 1, "mode": "standard"},
            s3={"addressing_style": "virtual" if virtual else "path"},
            signature_version=UNSIGNED if unsigned else None,
        )
        options: dict[str, Any] = {"config": config}
        if scheme == "gs" or "AWS_S3_ENDPOINT" in os.environ:
            options["endpoint_url"] = f"{'https' if https else 'http'}://{netloc}"
        if scheme == "gs":
            options["aws_access_key_id"] = os.environ.get("GS_ACCESS_KEY_ID")
            options["aws_secret_access_key"] = os.environ.get("GS_SECRET_ACCESS_KEY")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        return boto3.session.Session().client("s3", region_name=region or None, **options)


def _raise_for_status(status: int) -> None:
    if status in MISSING_STATUSES:
        raise DatasetNotFoundError()
    if status >= 400:
        raise RemoteUnavailableError()


def _version(headers: httpx.Headers) -> str:
    etag = headers.get("etag")
    if etag:
        return f"etag={etag}"
    size = headers.get("content-range", "").rpartition("/")[2] or headers.get("content-length")
    return f"lm={headers.get('last-modified', '')};len={size or ''}"


def _refuse_all(url: str) -> Source:
    raise SourceNotAllowedError()
