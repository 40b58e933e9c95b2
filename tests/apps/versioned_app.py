"""The real app whose models load as ``TestUpscaler`` stand-ins named by their cards.

``uvicorn --factory tests.apps.versioned_app:create_app``. Every model URI (champion,
canary, shadow; paths or ``models:/``) resolves as in production; the resolved card names
the version, its ``test_delay_s`` slows every call, and ``test_ballast_mb`` makes the
model hold that much memory (so that freeing an old model shows in the RSS).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from fastapi import FastAPI

from sr_engine.checkpoint import DEFAULT_CHECKPOINT
from tests.apps.upscalers import TestUpscaler
from tileserver.app import create_app as create_real_app


class VersionedUpscaler(TestUpscaler):
    """A ``TestUpscaler`` with a version of its own, a delay and memory ballast."""

    def __init__(self, version: str, delay_s: float = 0.0, ballast_mb: float = 0.0) -> None:
        super().__init__(delay_s=delay_s)
        self.version = version
        self.ballast = np.ones(int(ballast_mb * 2**20), dtype=np.uint8)  # pages touched


def load_version(weights: Path | None) -> VersionedUpscaler:
    """The stand-in named by the card beside ``weights``."""
    card = json.loads((weights or DEFAULT_CHECKPOINT).with_suffix(".json").read_text())
    return VersionedUpscaler(
        card["version"],
        delay_s=float(card.get("test_delay_s", 0.0)),
        ballast_mb=float(card.get("test_ballast_mb", 0.0)),
    )


def create_app() -> FastAPI:
    """The app of ``tileserver.app`` with stand-in models."""
    return create_real_app(loader=load_version)
