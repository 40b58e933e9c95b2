"""All runtime configuration, read once from ``HNDSR_*`` environment variables."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tileserver.tms import DEFAULT_WMTS_TMS, tms_subset

RENDER_THREADS_PER_CPU = 4
"""Default render threads per usable CPU: enough to overlap remote reads, few enough that
the requests rendering at once on a CPU still finish within the SR latency budget."""


def default_render_threads() -> int:
    """``RENDER_THREADS_PER_CPU`` x the CPUs this process may run on (at least 4)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(4, RENDER_THREADS_PER_CPU * (cpus or 1))


class Settings(BaseSettings):
    """hndsr-tiles settings (environment prefix ``HNDSR_``)."""

    model_config = SettingsConfigDict(env_prefix="HNDSR_", extra="ignore")

    data_dir: Path = Field(
        Path("./data"), description="Folder holding the datasets (COGs, STAC items)."
    )
    allowed_sources: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated URL/path prefixes that may be opened; "
        "empty: the data directory.",
    )
    remote_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Longest wait for one HTTP request to a remote source (GDAL_HTTP_TIMEOUT "
        "and the server's own lookups); past it the request answers 504.",
    )
    remote_connect_timeout_s: float = Field(
        5.0, gt=0, description="Longest wait to connect to a remote (GDAL_HTTP_CONNECTTIMEOUT)."
    )
    remote_max_retry: int = Field(
        1, ge=0, le=10, description="Retries of a remote request on 5xx/429 (GDAL_HTTP_MAX_RETRY)."
    )
    remote_retry_delay_s: float = Field(
        0.5, ge=0, description="First delay between retries (GDAL_HTTP_RETRY_DELAY)."
    )
    remote_identity_ttl_s: float = Field(
        10.0,
        ge=0,
        description="How long a remote object's lookup (final URL after redirects, ETag or "
        "Last-Modified: the cache key's dataset version) is remembered.",
    )
    cache_dir: Path = Field(Path("./cache-data"), description="Disk cache folder.")
    cache_size_mb: int = Field(1024, gt=0, description="Disk cache size limit in MB.")
    memory_cache_mb: int = Field(128, ge=0, description="In-process LRU size limit in MB.")
    redis_url: str | None = Field(
        None, description="Redis URL of the shared tier; unset: no Redis tier."
    )
    model_path: Path | None = Field(None, description="HNDSR checkpoint; unset: the shipped one.")
    model_uri: str | None = Field(
        None,
        description="Model to serve: a checkpoint path or an MLflow registry URI such as "
        "`models:/hndsr@champion` (store: `MLFLOW_TRACKING_URI`); unset: HNDSR_MODEL_PATH.",
    )
    canary_model_uri: str | None = Field(
        None, description="Challenger served to a share of the map (path or `models:/` URI)."
    )
    canary_fraction: float = Field(
        0.0, ge=0.0, le=1.0, description="Share of the map's blocks the canary serves (0-1)."
    )
    canary_block_zoom_offset: int = Field(
        4,
        ge=0,
        le=24,
        description="A tile's canary block is its ancestor this many zooms up (z-4: 16x16 tiles).",
    )
    shadow_model_uri: str | None = Field(
        None, description="Challenger that recomputes a sample of live SR tiles in the background."
    )
    shadow_rate: float = Field(
        0.0, ge=0.0, le=1.0, description="Share of live SR tiles the shadow model recomputes."
    )
    admin_token: str | None = Field(
        None,
        description="Bearer token of `POST /admin/model/reload`; unset: no admin routes.",
    )
    device: str = Field("auto", pattern="^(auto|cpu|cuda)$", description="Inference device.")
    sr_min_scale: float = Field(
        1.1, gt=1.0, description="At or below this scale tiles are plain TiTiler tiles."
    )
    sr_max_scale: float = Field(8.0, gt=1.0, le=8.0, description="Deepest advertised scale.")
    sr_max_batch: int = Field(8, ge=1, description="Most SR jobs in one model call.")
    sr_max_wait_ms: float = Field(5.0, ge=0, description="Longest wait for a batch to fill.")
    sr_queue_limit: int = Field(64, ge=1, description="Most SR jobs waiting before degrading.")
    sr_latency_budget_ms: float = Field(
        2000.0,
        ge=0,
        description="Longest expected SR wait before auto degrades and explicit modes get 503; "
        "0: no budget (only the queue limit applies).",
    )

    wmts_tms: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_WMTS_TMS),
        description="Comma-separated tile matrix sets that WMTSCapabilities.xml lists "
        "(tile routes accept all 13 of morecantile's).",
    )

    max_tilesize: int = Field(1024, ge=64, description="Largest `tilesize` of a tile request.")
    max_buffer: int = Field(64, ge=0, description="Largest tile `buffer` (pixels each side).")
    max_padding: int = Field(64, ge=0, description="Largest tile `padding` (pixels).")
    max_image_pixels: int = Field(
        2048 * 2048,
        ge=65536,
        description="Most output pixels of a preview, bbox or feature image (width x height).",
    )
    max_bands: int = Field(16, ge=1, description="Most bands out of `bidx` or `expression`.")
    max_expression_length: int = Field(
        1000, ge=16, description="Longest band-math `expression` (characters)."
    )
    max_histogram_bins: int = Field(1024, ge=1, description="Most `histogram_bins`.")
    max_feature_vertices: int = Field(
        100_000, ge=4, description="Most vertices of a GeoJSON body (feature, statistics)."
    )
    max_body_bytes: int = Field(
        4 * 2**20, ge=1024, description="Largest request body (bytes); larger: 413."
    )
    max_source_pixels: int = Field(
        64 * 2**20,
        ge=2**20,
        description="Most source pixels one request may read (at the overview GDAL uses); "
        "a low-zoom request on a dataset without overviews is refused.",
    )
    render_deadline_s: float = Field(
        30.0, gt=0, description="Longest a dataset request may render before it answers 504."
    )
    render_threads: int = Field(
        default_factory=default_render_threads,
        ge=1,
        description="Threads rendering at once for TiTiler work (health checks never wait "
        "for them); an SR tile waiting for its batch lends its place to another request. "
        "Default: 4 per CPU this process may use (at least 4).",
    )
    render_queue: int = Field(
        64,
        ge=0,
        description="Dataset requests waiting for a render thread before new ones get 503.",
    )
    render_queue_wait_s: float = Field(
        2.0,
        ge=0,
        description="Longest expected wait for a render thread before a new dataset request "
        "gets 503 at once (queue depth x the requests' running time); 0: only the render queue "
        "bound applies.",
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated API keys; empty: no key needed (the embedded default).",
    )
    url_signing_secret: str | None = Field(
        None, description="Secret of signed tile URLs (`?token=`); unset: no signed URLs."
    )
    rate_limit_per_minute: float = Field(
        0.0,
        ge=0,
        description="Cold SR tiles per minute per API key and per client IP; 0: no limit.",
    )
    rate_limit_burst: int = Field(
        20, ge=1, description="Cold SR tiles a client may take at once before its rate applies."
    )

    @field_validator("wmts_tms", mode="after")
    @classmethod
    def _known_tms(cls, value: list[str]) -> list[str]:
        tms_subset(value)  # ValueError naming the unknown ones
        return value

    @field_validator("allowed_sources", "wmts_tms", "api_keys", mode="before")
    @classmethod
    def _split_sources(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @property
    def allowed_prefixes(self) -> list[str]:
        """The allowlist, defaulting to the resolved data directory."""
        return self.allowed_sources or [str(self.data_dir.resolve())]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings object."""
    return Settings()  # type: ignore[call-arg]  # fields come from the environment
