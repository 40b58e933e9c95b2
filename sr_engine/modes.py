"""The SR mode names, in one place: what a request asks for (``sr=``), what an upscaler
runs, and what a tile reports (``X-SR-Mode``)."""

from __future__ import annotations

from enum import StrEnum

AUTO = "auto"
"""The model's default mode; bicubic without a model; degrades to bicubic under overload."""
OFF = "off"
"""No super-resolution: rio-tiler's own tile."""
BICUBIC = "bicubic"
FAST = "fast"
DIFFUSION = "diffusion"
DEGRADED_MODE = "degraded-bicubic"
"""The mode a tile reports (``X-SR-Mode``) when a model mode fell back to bicubic under
overload or failure; such tiles are never cached."""

SR_MODES = (BICUBIC, FAST, DIFFUSION)
"""Modes an upscaler can run."""
MODEL_MODES = (FAST, DIFFUSION)
"""Modes that run a model (through the SR runtime)."""


class RequestMode(StrEnum):
    """The ``sr`` query parameter's values."""

    AUTO = AUTO
    OFF = OFF
    BICUBIC = BICUBIC
    FAST = FAST
    DIFFUSION = DIFFUSION
