"""Early SR admission: a cold COG tile in an explicit model mode (``sr=fast|diffusion``)
that the SR runtime would refuse now gets its 503 before it waits for a render thread or
opens its dataset. The server knows that a tile is past native resolution without opening
the dataset once a reader of the same dataset, TMS and tile size has super-resolved a tile:
``SRZoomMemo`` keeps the first super-resolved zoom it found. Unknown datasets (and STAC and
mosaic tiles, whose readers open other URLs) are admitted, and the reader asks the runtime
again before its read (``SRBackend.admit``)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from cache.keys import parse_tile_request
from sr_engine import ModelUnavailableError
from sr_engine.modes import MODEL_MODES
from sr_engine.runtime import Overloaded
from tileserver.errors import SourceNotAllowedError
from tileserver.guards import send_json
from tileserver.http_middleware import HTTPMiddleware
from tileserver.security import Allowlist
from tileserver.sr_backend import SRBackend
from tileserver.sr_zooms import SRZoomMemo


class EarlySRAdmission(HTTPMiddleware):
    """503 + Retry-After, before any work, for a cold tile in an explicit model mode that
    is known to be super-resolved while the SR runtime refuses new jobs."""

    def __init__(
        self, app: ASGIApp, backend: SRBackend, memo: SRZoomMemo, allowlist: Allowlist
    ) -> None:
        super().__init__(app)
        self.backend = backend
        self.memo = memo
        self.allowlist = allowlist

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse or pass the request on."""
        refusal = self._refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        retry = [(b"retry-after", str(max(1, round(refusal.retry_after))).encode())]
        await send_json(send, 503, f"SR mode unavailable: {refusal}", retry)

    def _refusal(self, scope: Scope) -> Overloaded | None:
        tile = parse_tile_request(scope["path"], scope["query_string"].decode("latin-1"))
        if tile is None or tile.endpoint != "cog" or tile.sr not in MODEL_MODES:
            return None
        try:
            key = (self.allowlist.check(tile.url), tile.tms, int(tile.tilesize))
        except (SourceNotAllowedError, ValueError):  # the route answers (403, 422)
            return None
        first = self.memo.sr_from_zoom(key)
        if first is None or first < 0 or tile.z < first:
            return None
        try:
            resolved = self.backend.resolve(tile.sr)
        except ModelUnavailableError:  # no such model: the route answers its 503
            return None
        try:
            self.backend.admit(resolved)
        except Overloaded as refused:
            return refused
        return None
