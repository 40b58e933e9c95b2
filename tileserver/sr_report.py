"""What the reader did for a request, turned into ``X-SR-*`` response headers.

A pure-ASGI middleware puts a fresh mutable ``SRReport`` in a context variable before
calling the app; Starlette copies the context into its threadpool, so the reader's
mutations are visible when the response starts.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tileserver.canary import MODEL_ROLE


@dataclass(frozen=True)
class ZoomInfo:
    """Zoom range of a dataset in one TMS, for the tile size of the advertised URLs."""

    native_zoom: int
    sr_from_zoom: int
    maxzoom: int
    tilesize: int

    def describe(self) -> str:
        """One sentence for tilejson descriptions and WMTS abstracts."""
        if self.sr_from_zoom < 0 or self.sr_from_zoom > self.maxzoom:
            return f"Native resolution up to zoom {self.maxzoom}; no super-resolved zooms."
        return (
            f"Native resolution at zoom {self.native_zoom}; zooms {self.sr_from_zoom}"
            f"-{self.maxzoom} ({self.tilesize}px tiles) are super-resolved on demand."
        )


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
    zooms: dict[str, ZoomInfo] = field(default_factory=dict)
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


class SRReportMiddleware:
    """Sets a fresh ``SRReport`` per HTTP request and adds its headers to the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
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
