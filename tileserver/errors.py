"""Typed errors of the server and the one place that maps them (and TiTiler's, rio-tiler's and
GDAL's) to HTTP codes. Bodies never carry absolute paths or URLs: a client sees what was wrong
with its request, not where the server keeps its data."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from pyproj.exceptions import CRSError
from rasterio._err import CPLE_BaseError
from rasterio.errors import RasterioError, RasterioIOError
from rio_tiler.errors import MaxArraySizeError, PointOutsideBounds, RioTilerError
from starlette.responses import JSONResponse
from titiler.core.errors import DEFAULT_STATUS_CODES

from sr_engine import ModelUnavailableError

log = logging.getLogger(__name__)

RETRY_AFTER_S = 30
"""``Retry-After`` sent with a 503 for a model mode that is not available."""


class _FixedMessageError(Exception):
    """An error whose message is the same for every instance (``message``)."""

    message = ""

    def __init__(self) -> None:
        super().__init__(self.message)


class SourceNotAllowedError(_FixedMessageError):
    """A dataset or STAC source outside the allowlist (the message never says whether it exists)."""

    message = "source not allowed"


class DatasetNotFoundError(_FixedMessageError):
    """An allowed local source that does not exist."""

    message = "dataset not found"


class RemoteTimeoutError(_FixedMessageError):
    """An allowed remote source that did not answer within the HTTP timeout."""

    message = "remote source timed out"


class RemoteUnavailableError(_FixedMessageError):
    """An allowed remote source that could not be reached or answered with an error."""

    message = "remote source unavailable"


class BadParameterError(Exception):
    """A query parameter TiTiler accepts by type but that cannot be served (400)."""


class LimitExceededError(Exception):
    """A request over a resource limit (400); the message names the limit's setting."""

    def __init__(self, what: str, value: float, limit: float, setting: str) -> None:
        super().__init__(
            f"{what} {_number(value)} exceeds the limit of {_number(limit)} "
            f"(setting HNDSR_{setting.upper()})"
        )


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,}"


class DeadlineExceededError(Exception):
    """The request ran past the render deadline (504)."""


class RateLimitedError(Exception):
    """The client spent its budget of cold SR tiles (429 + ``Retry-After``)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("rate limit exceeded for cold super-resolved tiles")
        self.retry_after = retry_after


STATUS_CODES: dict[type[Exception], int] = {
    **DEFAULT_STATUS_CODES,
    RioTilerError: 400,  # rio-tiler's own errors are about the request (bands, bounds, shapes)
    PointOutsideBounds: 404,
    MaxArraySizeError: 400,
    RecursionError: 400,  # a deeply nested expression
    MemoryError: 400,  # an allocation no limit foresaw (numpy's refusal, not the OOM killer)
    OverflowError: 400,  # a number in the request too large for GDAL or numpy
    CRSError: 400,  # a CRS in the request (a body's tile matrix set, coord-crs) PROJ cannot parse
    SourceNotAllowedError: 403,
    DatasetNotFoundError: 404,
    RemoteTimeoutError: 504,
    RemoteUnavailableError: 502,
    BadParameterError: 400,
    LimitExceededError: 400,
    DeadlineExceededError: 504,
}
MESSAGES: dict[type[Exception], str] = {
    RecursionError: "expression too deeply nested",
    MemoryError: "the request needs more memory than the server allows: ask for fewer pixels",
    OverflowError: "a number in the request is out of range",
    CRSError: "a coordinate reference system in the request is not valid",
}

_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.IGNORECASE)
_PATH = re.compile(r"(?<![\w.:/])/(?:vsi[a-z0-9_]+/)?(?:[^\s'\"<>/]+/)*[^\s'\"<>/]*[\w.]")


def public_message(message: str) -> str:
    """``message`` with URLs and absolute paths replaced by their last path segment."""
    message = _URL.sub(lambda m: _last_segment(m.group(0)), message)
    return _PATH.sub(lambda m: _last_segment(m.group(0)), message)


def _last_segment(text: str) -> str:
    name = text.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return f"<{name}>" if name else "<source>"


def _rasterio_io_status(message: str) -> tuple[int, str]:
    """Status and public text of a GDAL open/read failure, from GDAL's message."""
    lowered = message.lower()
    if "not recognized as" in lowered or "not a supported file format" in lowered:
        return 415, "the dataset is not a raster this server can read"
    if "no such file" in lowered or "response code: 404" in lowered:
        return 404, "dataset not found"
    if "proj:" in lowered or "invalid latitude" in lowered or "invalid longitude" in lowered:
        return 400, "coordinates outside the valid range of the dataset's projection"
    return 500, "the dataset could not be read"


def _handler(status_code: int):
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        if status_code >= 500:
            log.error("%s mapped to HTTP %s", type(exc).__name__, status_code, exc_info=exc)
        message = MESSAGES.get(type(exc)) or public_message(str(exc))
        return JSONResponse({"detail": message}, status_code=status_code)

    return handler


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette logs the exception; the body says nothing about the server's internals
    return JSONResponse({"detail": "internal server error"}, status_code=500)


async def _model_unavailable(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": public_message(f"SR mode unavailable: {exc}")},
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


async def _gdal_error(request: Request, exc: Exception) -> JSONResponse:
    """A GDAL failure: typed for a remote source, else by GDAL's message (no path in it)."""
    typed = remote_failure(exc)
    if typed is not None:
        status_code, message = STATUS_CODES[type(typed)], str(typed)
    else:
        status_code, message = _rasterio_io_status(str(exc))
    if status_code >= 500:
        log.error("GDAL read failed", exc_info=exc)
    return JSONResponse({"detail": message}, status_code=status_code)


async def _rate_limited(request: Request, exc: Exception) -> JSONResponse:
    retry_after = max(1, round(getattr(exc, "retry_after", 1)))
    return JSONResponse(
        {"detail": str(exc)}, status_code=429, headers={"Retry-After": str(retry_after)}
    )


def install_error_handlers(app: FastAPI) -> None:
    """Map every typed error to its status code (the most specific class wins; GDAL failures
    of remote reads typed first)."""
    for exc_class, status_code in STATUS_CODES.items():
        if exc_class is Exception:
            app.add_exception_handler(Exception, _server_error)
        elif exc_class is RasterioError:
            app.add_exception_handler(exc_class, _handler(500))
        elif exc_class is not RasterioIOError:
            app.add_exception_handler(exc_class, _handler(status_code))
    for gdal_error in (RasterioIOError, CPLE_BaseError):
        app.add_exception_handler(gdal_error, _gdal_error)
    app.add_exception_handler(ModelUnavailableError, _model_unavailable)
    app.add_exception_handler(RateLimitedError, _rate_limited)


ERROR_RESPONSES: dict[int | str, dict[str, str]] = {
    400: {"description": "Bad request: a parameter is invalid or over a resource limit"},
    401: {"description": "API key required (when keys are configured)"},
    403: {"description": "Source not allowed, or the API key is invalid or expired"},
    404: {"description": "Dataset, tile, point or asset not found"},
    413: {"description": "Request body over the size limit"},
    415: {"description": "The dataset is not a readable raster"},
    422: {"description": "Validation error"},
    429: {"description": "Rate limit of cold super-resolved tiles exceeded (Retry-After)"},
    500: {"description": "Internal error"},
    502: {"description": "Remote source unavailable"},
    503: {"description": "Overloaded or SR mode unavailable (Retry-After)"},
    504: {"description": "Render deadline exceeded, or a remote source timed out"},
}
"""The error responses the dataset routes can return (documented in the OpenAPI)."""
