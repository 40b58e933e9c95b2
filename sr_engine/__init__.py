"""HNDSR super-resolution engine: models, checkpoints and the bicubic baseline.

Usable on its own (notebook, batch job): it imports nothing from the server packages.
"""

from __future__ import annotations

from pathlib import Path

from sr_engine.bicubic import BicubicUpscaler
from sr_engine.interface import ModelUnavailableError, Upscaler
from sr_engine.modes import DEGRADED_MODE, SR_MODES

__all__ = [
    "DEGRADED_MODE",
    "SR_MODES",
    "BicubicUpscaler",
    "ModelUnavailableError",
    "Upscaler",
    "load_model",
]


def load_model(path: str | Path | None = None, device: str = "auto") -> Upscaler:
    """Load an HNDSR checkpoint (``None``: the one shipped in the package).

    Raises ``ModelUnavailableError`` if the checkpoint is missing or corrupt.
    """
    from sr_engine.checkpoint import load_checkpoint

    return load_checkpoint(path, device=device)
