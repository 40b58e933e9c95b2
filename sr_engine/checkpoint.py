"""Checkpoint loading (placeholder until the HNDSR model lands: no checkpoint ships yet)."""

from __future__ import annotations

from sr_engine.interface import ModelUnavailableError, Upscaler


def load_checkpoint(path=None, device: str = "auto") -> Upscaler:
    """Load a safetensors checkpoint and its model card."""
    raise ModelUnavailableError("no HNDSR checkpoint is available yet")
