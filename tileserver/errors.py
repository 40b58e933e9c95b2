"""Typed errors of the server and the one place that maps them (and TiTiler's) to HTTP codes."""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.responses import JSONResponse
from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers

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


class InvalidTileIndexError(Exception):
    """z/x/y outside the TileMatrixSet (negative, beyond the matrix, or too deep)."""


STATUS_CODES: dict[type[Exception], int] = {
    **DEFAULT_STATUS_CODES,
    SourceNotAllowedError: 403,
    DatasetNotFoundError: 404,
    InvalidTileIndexError: 400,
}


async def _model_unavailable(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": f"SR mode unavailable: {exc}"},
        status_code=503,
        headers={"Retry-After": str(round(getattr(exc, "retry_after", RETRY_AFTER_S)))},
    )


def install_error_handlers(app: FastAPI) -> None:
    """Map every typed error to its status code."""
    add_exception_handlers(app, STATUS_CODES)
    app.add_exception_handler(ModelUnavailableError, _model_unavailable)
