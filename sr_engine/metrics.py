"""Prometheus metrics of the SR runtime (names are part of the contract in DESIGN.md).

``version`` labels name the model version that ran (canary and champion side by side).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SR_TILES = Counter("hndsr_sr_tiles_total", "Tiles super-resolved.", ["mode", "version"])
SR_INFERENCES = Counter(
    "hndsr_sr_inferences_total", "Model calls (one per batch).", ["mode", "version"]
)
SR_FAILED_TILES = Counter(
    "hndsr_sr_failed_tiles_total", "Tiles whose model batch failed.", ["version"]
)
SR_BATCH_DURATION = Histogram(
    "hndsr_sr_batch_duration_seconds",
    "Duration of one model call.",
    ["version"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SR_BATCH_SIZE = Histogram(
    "hndsr_sr_batch_size", "Jobs per model call.", buckets=(1, 2, 4, 8, 16, 32, 64)
)
SR_QUEUE_DEPTH = Gauge("hndsr_sr_queue_depth", "SR jobs waiting.", multiprocess_mode="livesum")
SR_COALESCED = Counter("hndsr_sr_coalesced", "Requests that waited on another's computation.")
SR_DEGRADED = Counter("hndsr_sr_degraded", "Tiles served bicubic because SR was unavailable.")
MODEL_INFO = Gauge(
    "hndsr_model_info",
    "Loaded model versions (role: champion, canary or shadow).",
    ["version", "mode", "device", "role"],
    multiprocess_mode="liveall",
)
MODEL_LOADED = Gauge(
    "hndsr_model_loaded", "1 when the HNDSR model is loaded.", multiprocess_mode="liveall"
)
MODEL_RELOADS = Counter(
    "hndsr_model_reloads_total", "Model reloads by role and result.", ["role", "result"]
)

SHADOW_TILES = Counter("hndsr_shadow_tiles_total", "Live SR tiles the shadow model recomputed.")
SHADOW_DROP_REASONS = ("queue_full", "stale", "error")
SHADOW_DROPPED = Counter(
    "hndsr_shadow_dropped_total",
    "Shadow jobs dropped (queue_full: offered under load; stale: live work never left room; "
    "error: the shadow model failed).",
    ["reason"],
)
for _reason in SHADOW_DROP_REASONS:  # samples at 0 from the start (dashboards, alerts)
    SHADOW_DROPPED.labels(_reason)
SHADOW_PSNR = Histogram(
    "hndsr_shadow_psnr_db",
    "Agreement of the shadow tile with the served tile (PSNR, dB; identical: 100).",
    buckets=(10, 15, 20, 25, 30, 35, 40, 45, 50, 60, 100),
)
SHADOW_LATENCY = Histogram(
    "hndsr_shadow_latency_seconds",
    "Duration of one shadow model call.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
