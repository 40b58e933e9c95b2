"""Early SR admission: a cold COG tile in a model mode asks the SR runtime on arrival,
before it waits for a render thread or opens its dataset. Admitted, it holds a ticket that
counts as a queued job until its job is submitted, so a burst arriving at an empty queue is
admitted only as far as the latency budget goes. Refused, an explicit mode
(``sr=fast|diffusion``) gets its 503 at once and ``sr=auto`` degrades to bicubic without
asking again.

The server knows that a tile is past native resolution without opening the dataset once a
reader of the same dataset, TMS and tile size has super-resolved a tile: ``SRZoomMemo``
keeps the first super-resolved zoom it found. Unknown datasets (and STAC and mosaic tiles,
whose readers open other URLs) hold no ticket, and the reader asks the runtime before its
read (``SRBackend.admit``)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from cache import BACKGROUND_RECOMPUTE
from cache.keys import parse_tile_request
from sr_engine import ModelUnavailableError
from sr_engine.modes import AUTO, BICUBIC, MODEL_MODES
from sr_engine.runtime import AdmissionTicket, SRRuntime
from tileserver.errors import SourceNotAllowedError
from tileserver.guards import send_json
from tileserver.http_middleware import HTTPMiddleware
from tileserver.security import Allowlist
from tileserver.sr_backend import ADMISSION, SRBackend
from tileserver.sr_zooms import SRZoomMemo


class EarlySRAdmission(HTTPMiddleware):
    """Admission ticket (``sr_engine.runtime.ADMISSION``) for a cold tile known to be
    super-resolved by a model; 503 + Retry-After before any work when an explicit mode is
    refused."""

    def __init__(
        self, app: ASGIApp, backend: SRBackend, memo: SRZoomMemo, allowlist: Allowlist
    ) -> None:
        super().__init__(app)
        self.backend = backend
        self.memo = memo
        self.allowlist = allowlist

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse, or pass the request on holding its ticket (released when it is done)."""
        runtime = self.backend.runtime
        explicit, ticket = (False, None) if runtime is None else self._ticket(scope, runtime)
        if runtime is None or ticket is None:
            await self.app(scope, receive, send)
            return
        if explicit and ticket.refusal is not None:
            retry_after = str(max(1, round(ticket.refusal.retry_after))).encode()
            detail = f"SR mode unavailable: {ticket.refusal}"
            await send_json(send, 503, detail, [(b"retry-after", retry_after)])
            return
        token = ADMISSION.set(ticket)
        try:
            await self.app(scope, receive, send)
        finally:
            ADMISSION.reset(token)
            runtime.release(ticket)

    def _ticket(self, scope: Scope, runtime: SRRuntime) -> tuple[bool, AdmissionTicket | None]:
        """(explicit mode?, the runtime's ticket), or no ticket when the tile is not known
        to be super-resolved by a model (the route and the reader decide)."""
        if BACKGROUND_RECOMPUTE.get():
            return False, None
        tile = parse_tile_request(scope["path"], scope["query_string"].decode("latin-1"))
        if tile is None or tile.endpoint != "cog" or tile.sr not in (*MODEL_MODES, AUTO):
            return False, None
        try:
            key = (self.allowlist.check(tile.url), tile.tms, int(tile.tilesize))
        except (SourceNotAllowedError, ValueError):  # the route answers (403, 422)
            return False, None
        first = self.memo.sr_from_zoom(key)
        if first is None or first < 0 or tile.z < first:
            return False, None
        try:
            resolved = self.backend.resolve(tile.sr)
        except ModelUnavailableError:  # no such model: the route answers its 503
            return False, None
        if resolved.mode == BICUBIC:
            return False, None
        return not resolved.may_degrade, runtime.reserve()
