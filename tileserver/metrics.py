"""HTTP metrics of the server (SR and cache metrics live with their producers)."""

from __future__ import annotations

from prometheus_client import Histogram

REQUEST_DURATION = Histogram(
    "hndsr_http_request_duration_seconds",
    "HTTP request duration by route and status.",
    ["route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
