"""Typed errors of the server and the one place that maps them (and TiTiler's) to HTTP codes."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from rasterio._err import CPLE_BaseError
from rasterio.errors import RasterioIOError
from starlette.responses import JSONResponse
from titiler.core.errors import (
    DEFAULT_STATUS_CODES,
    add_exception_handlers,
    exception_handler_factory,
)

from sr_engine import ModelUnavailableError

RETRY_AFTER_S = 30
"""``Retry-After`` sent with a 503 for a model mode that is not available."""


class SourceNotAllowedError(Exception):
    """A dataset or STAC source outside the allowlist (the message never says whether it exists)."""

    def __init__(self) -> None:
        super().__init__("source not allowed")


class DatasetNotFoundError(Exception):
    """An allowed local source that does not exist."""

    def __init__(self) -> None:
        super().__init__("dataset not found")


class RemoteTimeoutError(Exception):
    """An allowed remote source that did not answer within the HTTP timeout."""

    def __init__(self) -> None:
        super().__init__("remote source timed out")


class RemoteUnavailableError(Exception):
    """An allowed remote source that could not be reached or answered with an error."""

    def __init__(self) -> None:
        super().__init__("remote source unavailable")


STATUS_CODES: dict[type[Exception], int] = {
    **DEFAULT_STATUS_CODES,
    SourceNotAllowedError: 403,
    DatasetNotFoundError: 404,
    RemoteTimeoutError: 504,
    RemoteUnavailableError: 502,
}


async def _model_unavailable(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": f"SR mode unavailable: {exc}"},
        status_code=503,
        headers={"Retry-After": str(round(getattr(exc, "retry_after", RETRY_AFTER_S)))},
    )


REMOTE_PATH = re.compile(
    r"/vsi(curl|s3|gs)/|https?://|CURL error|HTTP response code|SOCKS", re.IGNORECASE
)
REMOTE_MISSING = re.compile(r"HTTP response code: (401|403|404|410)\b")


def remote_failure(exc: Exception) -> Exception | None:
    """The typed error of a GDAL failure reading a remote source (None: not a remote one).

    GDAL reports a remote that broke off mid-read (or whose reads the egress guard refused)
    as a generic open/read error naming the ``/vsicurl/`` path: those are 502.
    """
    message = str(exc)
    if not REMOTE_PATH.search(message):
        return None
    if "timed out" in message.lower() or "timeout" in message.lower():
        return RemoteTimeoutError()
    if REMOTE_MISSING.search(message):
        return DatasetNotFoundError()
    return RemoteUnavailableError()


def _gdal_error_handler(fallback: Callable[..., Any]) -> Callable[..., Any]:
    def handler(request: Request, exc: Exception) -> Any:
        typed = remote_failure(exc)
        if typed is None:
            return fallback(request, exc)
        return JSONResponse({"detail": str(typed)}, status_code=STATUS_CODES[type(typed)])

    return handler


def install_error_handlers(app: FastAPI) -> None:
    """Map every typed error to its status code (GDAL failures of remote reads included)."""
    add_exception_handlers(app, STATUS_CODES)
    app.add_exception_handler(ModelUnavailableError, _model_unavailable)
    for gdal_error in (RasterioIOError, CPLE_BaseError):
        status = STATUS_CODES.get(gdal_error, 500)
        fallback = exception_handler_factory(status, gdal_error)
        app.add_exception_handler(gdal_error, _gdal_error_handler(fallback))
