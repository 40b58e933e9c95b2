"""Weight-space interpolation between a checkpoint and one fine-tuned (and grown) from it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from sr_engine.checkpoint import read_network, read_state, save_checkpoint
from sr_engine.model import HNDSR, HNDSRConfig, regular_inputs
from training.interpolate import interpolate

SMALL = HNDSRConfig(feats=8, blocks=1, hidden=8, ae_width=8, refiner_width=8)


def fast(net: HNDSR, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net.fast(x, *regular_inputs(x, (2.5, 2.5), (20, 24), np.zeros((1, 2))))


@pytest.fixture
def pair(tmp_path):
    """A base checkpoint and a "tuned" one grown by a wide block, every tensor moved."""
    torch.manual_seed(0)
    base = HNDSR(SMALL)
    save_checkpoint(base, tmp_path / "base.safetensors")
    tuned = HNDSR(replace(SMALL, wide_blocks=1, wide_feats=16))
    tuned.load_state_dict(base.state_dict(), strict=False)
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_checkpoint(tuned, tmp_path / "tuned.safetensors")
    return base, tuned, tmp_path


def test_alpha_zero_computes_the_base_and_one_the_tuned(pair):
    base, tuned, folder = pair
    x = torch.rand(1, 3, 16, 18)
    for alpha, reference in ((0.0, base), (1.0, tuned)):
        out = folder / f"a{alpha}.safetensors"
        card = interpolate(folder / "base.safetensors", folder / "tuned.safetensors", alpha, out)
        assert card["interpolation"]["alpha"] == alpha
        net = read_network(out)
        assert net.cfg.wide_blocks == 1
        assert torch.allclose(fast(net, x), fast(reference, x), atol=1e-6)
    assert not torch.allclose(fast(base, x), fast(tuned, x), atol=1e-3)  # the two differ


def test_half_way_is_the_mean_of_the_shared_tensors(pair, tmp_path):
    _, _, folder = pair
    out = folder / "half.safetensors"
    interpolate(folder / "base.safetensors", folder / "tuned.safetensors", 0.5, out)
    _, base = read_state(folder / "base.safetensors")
    _, tuned = read_state(folder / "tuned.safetensors")
    _, half = read_state(out)
    name = "operator.head.weight"
    assert torch.allclose(half[name], (base[name] + tuned[name]) / 2)
    grown_zero = "operator.wide.0.conv2.weight"  # starts at zero: half of the tuned
    assert torch.allclose(half[grown_zero], tuned[grown_zero] / 2)


def test_alpha_outside_the_unit_interval_is_refused(pair):
    _, _, folder = pair
    with pytest.raises(SystemExit, match="alpha"):
        interpolate(folder / "base.safetensors", folder / "tuned.safetensors", 1.5, folder / "x")
