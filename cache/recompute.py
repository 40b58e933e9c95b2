"""The marker of the cache's background recomputation of a degraded tile (decision 0501)."""

from __future__ import annotations

import contextvars

BACKGROUND_RECOMPUTE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "hndsr_background_recompute", default=False
)
"""True while the cache recomputes a degraded tile: the SR backend should submit the job as a
background job (wait for capacity) rather than degrade it again."""
