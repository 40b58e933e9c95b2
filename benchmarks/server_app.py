"""The server the benchmarks run: the real app, with the HNDSR model.

The shipped checkpoint when ``sr_engine.load_model()`` has one; otherwise the same
architecture with untrained weights (the same computation per tile, so the same timings;
the pixels are meaningless). ``X-SR-Model`` names the one that served
(``hndsr-untrained-bench`` for the latter).
"""

from __future__ import annotations

from fastapi import FastAPI

from sr_engine import ModelUnavailableError, Upscaler, load_model
from tileserver.app import create_app as create_real_app
from tileserver.settings import get_settings


def benchmark_model() -> Upscaler:
    """The shipped model, or the HNDSR architecture with seeded untrained weights."""
    settings = get_settings()
    try:
        return load_model(settings.model_path, device=settings.device)
    except ModelUnavailableError:
        import torch

        from sr_engine.model import HNDSR, HNDSRConfig, HNDSRUpscaler

        torch.manual_seed(0)
        device = "cuda" if settings.device != "cpu" and torch.cuda.is_available() else "cpu"
        return HNDSRUpscaler(HNDSR(HNDSRConfig()), "hndsr-untrained-bench", device=device)


def create_app() -> FastAPI:
    """``uvicorn --factory benchmarks.server_app:create_app``."""
    return create_real_app(upscaler=benchmark_model())
