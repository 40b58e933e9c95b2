"""Opt-in API keys and signed tile URLs (off unless ``HNDSR_API_KEYS`` or
``HNDSR_URL_SIGNING_SECRET`` is set).

A dataset request (``/cog``, ``/stac``, ``/catalog``) carries a key in the ``X-API-Key``
header or the ``key`` query parameter (QGIS and Leaflet URL templates can hold it), or a
signed ``token=<client>.<expires>.<signature>`` (HMAC-SHA256 of ``<client>.<expires>``
with the signing secret; ``sign_token`` makes one). Missing: 401; wrong or expired: 403.
Health, metrics, the OpenAPI page and the web map stay open. The guard sits in front of the
cache's hit fast path, so cached tiles need a key too; the key and token never reach the
cache key (it keeps only TiTiler's rendering parameters). The guard records the client
(``key:<index>``, ``token:<client>`` or ``ip:<address>``) in the scope for the rate limiter.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any
from urllib.parse import parse_qsl

from tileserver.guards import ASGIApp, Receive, Scope, Send, send_json
from tileserver.settings import Settings

CLIENT_SCOPE_KEY = "hndsr.client"
"""Scope entry naming the client (rate-limit identity) of a request."""
PROTECTED_PREFIXES = ("/cog/", "/stac/", "/catalog")


def _signature(secret: str, message: str) -> str:
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign_token(secret: str, client: str, expires: int) -> str:
    """A signed URL token for ``client`` valid until the Unix time ``expires``."""
    if "." in client:
        raise ValueError("the client name may not contain '.'")
    return f"{client}.{expires}.{_signature(secret, f'{client}.{expires}')}"


def client_ip(scope: Scope) -> str:
    """The rate-limit identity of an anonymous request: its client address."""
    client = scope.get("client")
    return f"ip:{client[0]}" if client else "ip:unknown"


class ApiKeyGuard:
    """401/403 for dataset requests without a valid key or unexpired signed token."""

    def __init__(self, app: ASGIApp, keys: list[str], signing_secret: str | None) -> None:
        self.app = app
        self.keys = {key: f"key:{index}" for index, key in enumerate(keys)}
        self.secret = signing_secret

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PROTECTED_PREFIXES):
            await self.app(scope, receive, send)
            return
        status, detail, client = self.authenticate(scope)
        if status:
            headers = [(b"www-authenticate", b'ApiKey header="X-API-Key"')] if status == 401 else []
            await send_json(send, status, detail, headers)
            return
        scope[CLIENT_SCOPE_KEY] = client
        await self.app(scope, receive, send)

    def authenticate(self, scope: Scope) -> tuple[int, str, str]:
        """``(0, "", client)`` for an accepted request, else ``(status, detail, "")``."""
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        key = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-api-key"), None)
        key = key or query.get("key")
        if key is not None:
            client = self._key_client(key)
            return (0, "", client) if client else (403, "invalid API key", "")
        token = query.get("token")
        if token is not None and self.secret:
            return self._check_token(token)
        return 401, "API key required (X-API-Key header, ?key= or a signed ?token=)", ""

    def _key_client(self, key: str) -> str | None:
        for known, client in self.keys.items():
            if hmac.compare_digest(known.encode(), key.encode()):
                return client
        return None

    def _check_token(self, token: str) -> tuple[int, str, str]:
        assert self.secret is not None
        parts = token.split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            return 403, "malformed token", ""
        client, expires, signature = parts
        expected = _signature(self.secret, f"{client}.{expires}")
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            return 403, "invalid token signature", ""
        if int(expires) < time.time():
            return 403, "token expired", ""
        return 0, "", f"token:{client}"


def install_api_keys(app: Any, settings: Settings) -> None:
    """Add the key guard as the outermost middleware (in front of the cache's hit fast path),
    when keys or a signing secret are configured."""
    if settings.api_keys or settings.url_signing_secret:
        app.add_middleware(
            ApiKeyGuard, keys=settings.api_keys, signing_secret=settings.url_signing_secret
        )
