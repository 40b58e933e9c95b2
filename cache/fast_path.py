"""The memory-hit fast path: the outermost ASGI layer, built in the app factory.

``HitFastPath`` answers memory hits before the layers between it and the cache middleware
run, so it must do for such a response what those layers would do. Each of them has a
*replica* here (``cors_replica``, ``request_duration_replica``): a function that wraps
``send`` the way the layer would. The app factory gives the fast path one list of them,
next to the middleware they replicate (decision 0502). Anything else goes down the stack.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cache.asgi import TileCache

Replica = Callable[[Scope, Send], Awaitable[Send]]
"""What a skipped layer does to a hit: ``await replica(scope, send)`` returns the ``send``
that layer would have passed down."""


class HitFastPath:
    """Answers memory hits itself; every other request goes on to ``app``.

    A Starlette middleware: ``app.add_middleware(HitFastPath, tiles=..., replicas=[...])``,
    added last so that it wraps every layer it replicates.
    """

    def __init__(self, app: ASGIApp, *, tiles: TileCache, replicas: Sequence[Replica]) -> None:
        self.app = app
        self.tiles = tiles
        self.memory = tiles.cache.memory
        self.replicas = tuple(reversed(replicas))  # the outermost layer wraps send last

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.memory is not None and scope["type"] == "http" and scope["method"] == "GET":
            resolved = await self.tiles.resolve(scope)
            entry = self.memory.peek(resolved[0]) if resolved is not None else None
            if entry is not None and resolved is not None:
                scope["route"] = resolved[1]  # as the cache middleware sets it
                for replica in self.replicas:
                    send = await replica(scope, send)
                await self.tiles.send_entry(scope, send, entry, b"HIT-memory")
                return
        await self.app(scope, receive, send)


def cors_replica(**options: Any) -> Replica:
    """Starlette's ``CORSMiddleware(**options)`` response headers.

    With any origin and no credentials they depend only on whether the request has an
    ``Origin``, so they are computed once per case; otherwise ``CORSMiddleware.send`` runs.
    """
    cors = CORSMiddleware(_unbound, **options)
    computed: dict[bool, list[tuple[bytes, bytes]]] = {}

    async def replica(scope: Scope, send: Send) -> Send:
        request_headers = Headers(scope=scope)
        if not cors.allow_all_origins or cors.allow_credentials:
            return functools.partial(cors.send, send=send, request_headers=request_headers)
        has_origin = "origin" in request_headers
        extra = computed.get(has_origin)
        if extra is None:
            probe: Message = {"type": "http.response.start", "status": 200, "headers": []}
            await cors.send(probe, send=_ignore, request_headers=request_headers)
            extra = computed[has_origin] = list(probe["headers"])

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], *extra]
            await send(message)

        return send_with_cors

    return replica


async def _unbound(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("a replica's layer is never called")


async def _ignore(message: Message) -> None:
    return None
