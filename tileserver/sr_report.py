"""What the reader did for a request, turned into ``X-SR-*`` response headers.

A pure-ASGI middleware puts a fresh mutable ``SRReport`` in a context variable before
calling the app; Starlette copies the context into its threadpool, so the reader's
mutations are visible when the response starts. The report carries response headers
only; descriptions (tilejson, WMTS) compute their zoom facts themselves (``sr_zooms``).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field

from starlette.types import Message, Receive, Scope, Send

from tileserver.canary import MODEL_ROLE
from tileserver.http_middleware import HTTPMiddleware


def format_scale(scale: tuple[float, float]) -> str:
    """``"2.5"``, or ``"sx,sy"`` when the two differ."""
    sx, sy = (f"{round(s, 4):g}" for s in scale)
    return sx if sx == sy else f"{sx},{sy}"


@dataclass
class SRReport:
    """Mutable per-request record filled by the reader."""

    mode: str | None = None
    scale: tuple[float, float] | None = None
    model: str | None = None
    model_role: str = field(default_factory=MODEL_ROLE.get)
    """The served model the request's tiles use (carried into rio-tiler's asset threads)."""

    def record(self, mode: str, scale: tuple[float, float], model: str) -> None:
        """Record the SR mode applied, the scale and the model version of the tile."""
        self.mode, self.scale, self.model = mode, scale, model

    def headers(self) -> list[tuple[bytes, bytes]]:
        """Raw ASGI headers (empty when no tile was rendered)."""
        if self.mode is None or self.scale is None or self.model is None:
            return []
        return [
            (b"x-sr-mode", self.mode.encode()),
            (b"x-sr-scale", format_scale(self.scale).encode()),
            (b"x-sr-model", self.model.encode()),
        ]


_current: ContextVar[SRReport | None] = ContextVar("sr_report", default=None)


def current_report() -> SRReport:
    """The request's report (a throwaway one outside a request)."""
    return _current.get() or SRReport()


class SRReportMiddleware(HTTPMiddleware):
    """Sets a fresh ``SRReport`` per HTTP request and adds its headers to the response."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request with a fresh report; its headers go on the response start."""
        report = SRReport()
        token = _current.set(report)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = report.headers()
                if extra:
                    message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            _current.reset(token)
