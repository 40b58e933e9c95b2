"""Operator routes behind a bearer token: ``POST /admin/model/reload``.

Mounted only when ``HNDSR_ADMIN_TOKEN`` is set; without it ``/admin/*`` answers 404 (not the
web map mount at ``/``, which takes every other path).
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tileserver.sr_backend import ReloadInProgress, SRBackend

bearer = HTTPBearer(auto_error=False)


def require_admin_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """401 unless ``Authorization: Bearer <HNDSR_ADMIN_TOKEN>``."""
    expected: str = request.app.state.settings.admin_token or ""
    given = credentials.credentials if credentials is not None else ""
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            401, "a valid admin bearer token is required", {"WWW-Authenticate": "Bearer"}
        )


router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin_token)])


@router.post("/model/reload")
async def reload_models(request: Request) -> JSONResponse:
    """Reload every served model from its URI (load and warm beside the old one, switch,
    free the old one). 200: every role reloaded or unchanged; 503: a role failed and keeps
    its model; 409: a reload is already running."""
    backend: SRBackend = request.app.state.sr_config.backend
    try:
        results = await asyncio.to_thread(backend.reload)
    except ReloadInProgress as exc:
        return JSONResponse({"detail": str(exc)}, status_code=409)
    failed = any(result["result"] == "error" for result in results.values())
    return JSONResponse({"models": results}, status_code=503 if failed else 200)


absent = APIRouter(prefix="/admin", include_in_schema=False)


@absent.api_route("/{rest:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
async def no_admin_routes(rest: str) -> None:
    """Without a token the admin routes do not exist (the web map mount would answer)."""
    raise HTTPException(404, "Not Found")


def include_admin_routes(app: FastAPI, token: str | None) -> None:
    """Mount the admin routes when a token is configured, else a 404 for ``/admin/*``."""
    app.include_router(router if token else absent)
