"""The HNDSR architecture through the runtime: a tile's pixels do not depend on its batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sr_engine.interface import regular_field
from sr_engine.model import HNDSR, HNDSRConfig, HNDSRUpscaler
from sr_engine.runtime import SRRuntime

SCALE = (2.5, 2.5)
OUT = (64, 64)


@pytest.fixture(scope="module")
def model() -> HNDSRUpscaler:
    """Seeded untrained weights: the batching invariants do not depend on training."""
    torch.manual_seed(0)
    return HNDSRUpscaler(HNDSR(HNDSRConfig()), "hndsr-test-untrained")


@pytest.mark.parametrize("mode", ["fast", "diffusion"])
def test_a_tile_batched_with_others_matches_the_tile_alone(model: HNDSRUpscaler, mode: str) -> None:
    rng = np.random.default_rng(0)
    base = 26 + 2 * model.halo  # floor/ceil windows of one zoom: n or n + 1 pixels
    windows = [
        rng.uniform(0, 1, (3, base + i % 2, base + i // 2 % 2)).astype(np.float32) for i in range(4)
    ]
    origin = (model.halo + 0.3, model.halo + 0.7)
    field = regular_field(np.array([origin]), SCALE, OUT)
    offsets = [(64 * i, 128) for i in range(4)]
    runtime = SRRuntime(model, max_batch=4, max_wait_ms=60_000)
    runtime.start()
    futures = [
        runtime.submit(lr, field[0], None, offset, mode)
        for lr, offset in zip(windows, offsets, strict=True)
    ]
    batched = [future.result(timeout=300) for future in futures]
    runtime.drain()
    for lr, offset, result in zip(windows, offsets, batched, strict=True):
        alone = model.upscale_batch(lr[None], field, None, np.array([offset]), mode=mode)[0]
        assert np.abs(result - alone).max() * 255 <= 1.0
