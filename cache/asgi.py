"""The tile cache as a plain ASGI middleware in front of the ``/cog`` and ``/stac`` tile routes.

``TileCache`` holds what both the middleware and the memory-hit fast path
(``cache/fast_path.py``) use: the tiers, request resolution and answering with an entry.
``TileCacheMiddleware(app, tiles=...)`` is a Starlette middleware (``app.add_middleware``).

Hit path: parse path and query, allowlist check, dataset identity (TTL-cached, no stat),
key, memory -> disk -> Redis, answer (``ETag``, ``Cache-Control``, ``X-Cache``, 304 on
``If-None-Match``). Miss path: one computation per key in the process (``SingleFlight``;
waiters counted in ``hndsr_http_coalesced_total``) and across processes
(``RedisCoalescer``); the downstream app's 200 responses are stored unless ``X-SR-Mode`` is
``degraded-bicubic``. A degraded response schedules a background recomputation of the same
request, run with ``BACKGROUND_RECOMPUTE`` set so that the SR backend queues it as a
background job instead of degrading again.

The package does not import ``tileserver``: the allowlist check (a callable that raises for a
source that may not be opened) and the model version are injected.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cache.coalesce import RedisCoalescer
from cache.entry import Entry, content_etag
from cache.keys import DatasetIdentity, RemoteIdentity, parse_tile_request, tile_cache_key
from cache.metrics import HTTP_COALESCED
from cache.recompute import BACKGROUND_RECOMPUTE
from cache.singleflight import SingleFlight
from cache.tiered import TieredCache
from cache.tiers import CacheTier
from sr_engine import DEGRADED_MODE

log = logging.getLogger(__name__)

LONG_CACHE_CONTROL = b"public, max-age=86400"
SHORT_CACHE_CONTROL = b"public, max-age=10"
REPLAYED_HEADERS = ("x-sr-mode", "x-sr-scale", "x-sr-model", "content-bbox", "content-crs")
"""Headers of the downstream response that are stored with the entry and replayed on hits."""


MEMO_SIZE = 10_000
"""Most memoized request resolutions and response header sets (least recently used go)."""


@dataclass(frozen=True, slots=True)
class TileRoute:
    """Stands in for the Starlette route in ``scope["route"]`` (its ``path`` labels metrics)."""

    path: str


@dataclass(slots=True)
class Outcome:
    """A computed response: the entry when it was cacheable, else the raw response."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    entry: Entry | None
    label: bytes


async def _empty_receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def run_captured(app: ASGIApp, scope: Scope) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Run ``app`` on a GET scope and return ``(status, headers, body)``."""
    start: Message = {}
    chunks: list[bytes] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(dict(scope), _empty_receive, send)
    return int(start.get("status", 500)), list(start.get("headers", [])), b"".join(chunks)


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _etag_matches(if_none_match: bytes, etag: bytes) -> bool:
    for candidate in if_none_match.split(b","):
        candidate = candidate.strip()
        if candidate == b"*" or candidate.removeprefix(b"W/") == etag:
            return True
    return False


class TileCache:
    """The tiers plus what every layer serving tiles needs: resolving a request to its key,
    answering with a stored entry. Shared by ``TileCacheMiddleware`` and ``HitFastPath``.

    ``check_source`` is the allowlist check of a dataset URL, ``model_version`` names the
    weights in the keys, ``remote_identity`` gives the dataset version (ETag) of remote
    sources (``build_tiered_cache`` makes ``cache`` from the settings)."""

    def __init__(
        self,
        cache: TieredCache,
        *,
        check_source: Callable[[str], object],
        model_version: Callable[[], str],
        remote_identity: RemoteIdentity | None = None,
    ) -> None:
        self.cache = cache
        self.check_source = check_source
        self.model_version = model_version
        self.identity = DatasetIdentity(remote=remote_identity)
        self._memo: LRUCache[tuple[str, bytes], tuple[float, str, tuple[str, TileRoute] | None]]
        self._memo = LRUCache(MEMO_SIZE)
        self._entry_headers: LRUCache[tuple[Any, ...], tuple[list[tuple[bytes, bytes]], bytes]]
        self._entry_headers = LRUCache(MEMO_SIZE)

    def down_checks(self) -> dict[str, Callable[[], bool]]:
        """``/readyz`` checks: ``cache-<tier>`` -> callable, True while that tier is down."""
        return {f"cache-{tier.name}": _down_check(tier) for tier in self.cache.tiers}

    async def resolve(self, scope: Scope) -> tuple[str, TileRoute] | None:
        """Cache key and route of an allowed tile request, None for anything else.

        Memoized per exact path and query for ``identity.ttl`` seconds (and the current model
        version): the allowlist decision, the source's identity and the key are recomputed
        at most that often, so a hot tile does not resolve paths or stat the source each time.
        """
        memo_key = (scope["path"], scope["query_string"])
        now = time.monotonic()
        model = self.model_version()
        memo = self._memo.get(memo_key)
        if memo is not None and memo[0] > now and memo[1] == model:
            return memo[2]
        request = parse_tile_request(scope["path"], scope["query_string"].decode("latin-1"))
        resolved = None
        if request is not None and self._allowed(request.url):
            normalized, version = await self.identity(request.url)
            template = f"/{request.endpoint}/tiles/{{tileMatrixSetId}}/{{z}}/{{x}}/{{y}}"
            route = TileRoute(template + (".{format}" if request.fmt else ""))
            resolved = tile_cache_key(request, normalized, version, model), route
        self._memo[memo_key] = (now + self.identity.ttl, model, resolved)
        return resolved

    def _allowed(self, url: str) -> bool:
        try:
            self.check_source(url)
        except Exception:
            return False
        return True

    def _headers(self, entry: Entry) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """Response headers of an entry (built once per entry) and its Content-Length."""
        cache_key = (entry.etag, entry.media_type, entry.headers)  # same bytes, other metadata
        built = self._entry_headers.get(cache_key)
        if built is None:
            headers = [
                (b"content-type", entry.media_type.encode()),
                (b"etag", entry.etag.encode()),
                (b"cache-control", LONG_CACHE_CONTROL),
            ]
            headers.extend((name.encode(), value.encode()) for name, value in entry.headers)
            built = self._entry_headers[cache_key] = (headers, str(len(entry.body)).encode())
        return built

    async def send_entry(self, scope: Scope, send: Send, entry: Entry, label: bytes) -> int:
        """Answer with a stored entry (304 when ``If-None-Match`` matches); returns the status."""
        headers, length = self._headers(entry)
        if_none_match = _header(scope["headers"], b"if-none-match")
        if if_none_match is not None and _etag_matches(if_none_match, entry.etag.encode()):
            start = {"type": "http.response.start", "status": 304}
            await send({**start, "headers": [*headers, (b"x-cache", label)]})
            await send({"type": "http.response.body", "body": b""})
            return 304
        headers = [*headers, (b"x-cache", label), (b"content-length", length)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": entry.body})
        return 200


class TileCacheMiddleware:
    """Cache tiles of ``/cog``, ``/stac`` and ``/mosaicjson`` ``/tiles/...``; the rest passes.

    A Starlette middleware: ``app.add_middleware(TileCacheMiddleware, tiles=TileCache(...))``.
    """

    def __init__(
        self, app: ASGIApp, *, tiles: TileCache, coalescer: RedisCoalescer | None = None
    ) -> None:
        self.app = app
        self.tiles = tiles
        self.cache = tiles.cache
        if coalescer is None and self.cache.redis is not None:
            coalescer = RedisCoalescer(self.cache.redis)
        self.coalescer = coalescer
        self.flights: SingleFlight[str, Outcome] = SingleFlight()
        self.background: dict[str, asyncio.Task[None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            return await self.app(scope, receive, send)
        resolved = await self.tiles.resolve(scope)
        if resolved is None:
            return await self.app(scope, receive, send)  # not a tile, or the app answers 4xx
        key, scope["route"] = resolved  # the route template labels the request metrics
        found = await self.cache.get(key)
        if found is not None:
            entry, tier = found
            await self.tiles.send_entry(scope, send, entry, b"HIT-" + tier.encode())
            return
        outcome, shared = await self.flights.arun(key, lambda: self._compute(key, scope))
        if shared:
            HTTP_COALESCED.inc()
        label = b"COALESCED" if shared else outcome.label
        if outcome.entry is not None:
            await self.tiles.send_entry(scope, send, outcome.entry, label)
            return
        headers = [*outcome.headers, (b"x-cache", label)]
        if _header(outcome.headers, b"x-sr-mode") == DEGRADED_MODE.encode():
            headers = [(k, v) for k, v in headers if k.lower() != b"cache-control"]
            headers.append((b"cache-control", SHORT_CACHE_CONTROL))
        await send({"type": "http.response.start", "status": outcome.status, "headers": headers})
        await send({"type": "http.response.body", "body": outcome.body})

    async def _compute(self, key: str, scope: Scope) -> Outcome:
        """Compute (or wait for another process computing) the response for ``key``."""
        token = None
        if self.coalescer is not None:
            token = await self.coalescer.acquire(key)
            if token is None:
                entry = await self.coalescer.wait_for(key)
                if entry is not None:  # read from Redis: fill only the faster tiers
                    await self.cache.set(key, entry, found_in=self.coalescer.tier)
                    return Outcome(200, [], b"", entry, b"COALESCED")
        try:
            status, headers, body = await run_captured(self.app, scope)
            entry = self._entry(status, headers, body)
            if entry is not None:
                await self.cache.set(key, entry)
                return Outcome(status, headers, body, entry, b"MISS")
        finally:
            if token is not None and self.coalescer is not None:
                await self.coalescer.release(key, token)
        if status == 200:  # a 200 that was not stored: degraded
            self._recompute_later(key, scope)
            headers = [*headers, (b"etag", content_etag(body).encode())]
        return Outcome(status, headers, body, None, b"MISS")

    @staticmethod
    def _entry(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> Entry | None:
        """The entry to store for a downstream response, or None (not 200, or degraded)."""
        if status != 200:
            return None
        replay = []
        for name, value in headers:
            lowered = name.decode("latin-1").lower()
            if lowered in REPLAYED_HEADERS:
                replay.append((lowered, value.decode("latin-1")))
        if dict(replay).get("x-sr-mode") == DEGRADED_MODE:
            return None
        media_type = (_header(headers, b"content-type") or b"application/octet-stream").decode()
        return Entry.create(body, media_type, tuple(replay))

    def _recompute_later(self, key: str, scope: Scope) -> None:
        """Recompute a degraded tile in the background (once per key at a time) and store it."""
        if key in self.background:
            return
        task = asyncio.get_running_loop().create_task(self._recompute(key, dict(scope)))
        self.background[key] = task
        task.add_done_callback(lambda _: self.background.pop(key, None))

    async def _recompute(self, key: str, scope: Scope) -> None:
        BACKGROUND_RECOMPUTE.set(True)
        try:
            status, headers, body = await run_captured(self.app, scope)
        except Exception:
            log.exception("background recompute of %s failed", scope["path"])
            return
        entry = self._entry(status, headers, body)
        if entry is not None:
            await self.cache.set(key, entry)


def _down_check(tier: CacheTier) -> Callable[[], bool]:
    return lambda: not tier.healthy()
