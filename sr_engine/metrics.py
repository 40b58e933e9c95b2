"""Prometheus metrics of the SR runtime (names are part of the contract in DESIGN.md)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SR_TILES = Counter("hndsr_sr_tiles_total", "Tiles super-resolved.", ["mode"])
SR_INFERENCES = Counter("hndsr_sr_inferences_total", "Model calls (one per batch).", ["mode"])
SR_BATCH_SIZE = Histogram(
    "hndsr_sr_batch_size", "Jobs per model call.", buckets=(1, 2, 4, 8, 16, 32, 64)
)
SR_QUEUE_DEPTH = Gauge("hndsr_sr_queue_depth", "SR jobs waiting.", multiprocess_mode="livesum")
SR_COALESCED = Counter("hndsr_sr_coalesced", "Requests that waited on another's computation.")
SR_DEGRADED = Counter("hndsr_sr_degraded", "Tiles served bicubic because SR was unavailable.")
MODEL_INFO = Gauge(
    "hndsr_model_info", "Loaded model.", ["version", "mode", "device"], multiprocess_mode="liveall"
)
MODEL_LOADED = Gauge(
    "hndsr_model_loaded", "1 when the HNDSR model is loaded.", multiprocess_mode="liveall"
)
