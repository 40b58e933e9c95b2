"""The HNDSR upscaler against the contract: shapes, bands, determinism, scales, seams."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sr_engine.bicubic import BicubicUpscaler
from sr_engine.interface import Upscaler, extend_field, field_cell, output_shape, regular_field
from sr_engine.model import HNDSR, HNDSRConfig, HNDSRUpscaler, coordinate_noise, regular_inputs


@pytest.fixture(scope="module")
def model() -> HNDSRUpscaler:
    """A small HNDSR with fixed random weights (the contract holds for any weights)."""
    torch.manual_seed(0)
    net = HNDSR(HNDSRConfig(feats=8, blocks=2, hidden=16, ae_width=8, refiner_width=8))
    return HNDSRUpscaler(net, "test-random")


def texture(channels: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((channels, h, w), dtype=np.float32)


def test_is_an_upscaler(model):
    assert isinstance(model, Upscaler)
    assert model.modes == ("bicubic", "fast", "diffusion")
    assert model.default_mode in model.modes
    assert model.halo >= model.net.cfg.fast_halo()


@pytest.mark.parametrize("mode", ["fast", "diffusion"])
@pytest.mark.parametrize("scale", [1.1, 2.7, (1.5, 3.2), (4.0, 2.0), 8.0])
@pytest.mark.parametrize("size", [(7, 11), (13, 5)])
def test_shape_and_range_for_odd_sizes_and_scales(model, mode, scale, size):
    out = model.upscale(texture(3, *size), scale, mode=mode)
    sxy = scale if isinstance(scale, tuple) else (scale, scale)
    assert out.shape == (3, *output_shape(size, sxy))
    assert out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("mode", ["fast", "diffusion"])
def test_four_bands_are_rgb_plus_a_grey_band(model, mode):
    lr = texture(4, 9, 10)
    out4 = model.upscale(lr, 2.5, mode=mode)
    assert out4.shape == (4, 22, 25)
    np.testing.assert_allclose(out4[:3], model.upscale(lr[:3], 2.5, mode=mode), atol=1e-6)
    np.testing.assert_allclose(out4[3:], model.upscale(lr[3:], 2.5, mode=mode), atol=1e-6)


def test_one_band_is_the_mean_of_its_replicated_rgb(model):
    lr = texture(1, 9, 10)
    out1 = model.upscale(lr, 3.0)
    rgb = model.upscale(np.repeat(lr, 3, axis=0), 3.0)
    assert out1.shape == (1, 27, 30)
    np.testing.assert_allclose(out1[0], rgb.mean(axis=0), atol=1e-6)


def test_diffusion_is_deterministic_for_a_seed_and_varies_with_it(model):
    lr = texture(3, 12, 12)
    a = model.upscale(lr, 2.0, mode="diffusion", seed=3)
    b = model.upscale(lr, 2.0, mode="diffusion", seed=3)
    c = model.upscale(lr, 2.0, mode="diffusion", seed=4)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-4


@pytest.mark.parametrize("mode", ["bicubic", "fast", "diffusion"])
@pytest.mark.parametrize("value", [0.0, 0.37, 1.0])
def test_constant_image_stays_constant(model, mode, value):
    out = model.upscale(np.full((3, 9, 11), value, np.float32), 2.3, mode=mode)
    np.testing.assert_allclose(out, value, atol=1e-5)


def test_scale_sweep_gives_finite_outputs_of_the_right_shape(model):
    lr = texture(3, 9, 10)
    for scale in np.round(np.arange(1.1, 8.0001, 0.1), 1):
        out = model.upscale(lr, float(scale))
        assert out.shape == (3, round(9 * scale), round(10 * scale)), scale
        assert np.isfinite(out).all(), scale


def test_cell_size_input_changes_the_output(model):
    lr = torch.from_numpy(texture(3, 10, 10))[None]
    coords, cell = regular_inputs(lr, (2.0, 2.0), (20, 20), np.zeros((1, 2)))
    with torch.no_grad():
        a = model.net.operator(lr, coords, cell)[0]
        b = model.net.operator(lr, coords, torch.full_like(cell, 0.25))[0]
    assert (a - b).abs().max() > 1e-4


def tile(model, lr_global, scale, col0, row0, size, mode, seed=0):
    """Render the output tile whose top-left is HR pixel (col0, row0) of the global grid,
    from a LR window cut around it with the model's halo (as the server does)."""
    sx, sy = scale
    halo = model.halo
    x0, y0 = col0 / sx, row0 / sy
    left, top = math.floor(x0) - halo, math.floor(y0) - halo
    w = math.ceil((col0 + size) / sx) + halo - left
    h = math.ceil((row0 + size) / sy) + halo - top
    window = lr_global[:, :, top : top + h, left : left + w]
    field = regular_field(np.array([[x0 - left, y0 - top]]), scale, (size, size))
    offsets = np.array([[col0, row0]])
    return model.upscale_batch(window, field, None, offsets, mode, seed)[0]


@pytest.mark.parametrize("mode", ["fast", "diffusion"])
@pytest.mark.parametrize("scale", [(2.5, 2.5), (3.0, 2.0)])
def test_adjacent_tiles_stitch_into_the_big_window(model, mode, scale):
    lr_global = texture(3, 120, 120, seed=5)[None]
    big = tile(model, lr_global, scale, 60, 60, 64, mode)
    left = tile(model, lr_global, scale, 60, 60, 32, mode)
    right = tile(model, lr_global, scale, 92, 60, 32, mode)
    below = tile(model, lr_global, scale, 60, 92, 32, mode)
    assert np.abs(np.concatenate([left, right], axis=2) - big[:, :32]).max() < 1e-3
    assert np.abs(below - big[:, 32:, :32]).max() < 1e-3


def rotated_field(col0, row0, size, angle=0.3, scale=2.5, centre=60.0):
    """LR coordinates of output pixels (col0.., row0..) on a grid rotated by ``angle``."""
    c, r = np.meshgrid(np.arange(col0, col0 + size) + 0.5, np.arange(row0, row0 + size) + 0.5)
    u, v = (c - 80) / scale, (r - 80) / scale
    ca, sa = math.cos(angle), math.sin(angle)
    return np.stack([centre + ca * u - sa * v, centre + sa * u + ca * v], axis=-1)[None]


@pytest.mark.parametrize("mode", ["bicubic", "fast", "diffusion"])
def test_adjacent_tiles_of_a_rotated_field_stitch(model, mode):
    """A non-separable (rotated) field: tiles sampled from one window agree where they meet."""
    lr = texture(3, 120, 120, seed=6)[None]
    offsets = lambda c, r: np.array([[c, r]])  # noqa: E731
    big = model.upscale_batch(lr, rotated_field(40, 40, 64), None, offsets(40, 40), mode)[0]
    left = model.upscale_batch(lr, rotated_field(40, 40, 32), None, offsets(40, 40), mode)[0]
    right = model.upscale_batch(lr, rotated_field(72, 40, 32), None, offsets(72, 40), mode)[0]
    assert np.abs(np.concatenate([left, right], axis=2) - big[:, :32]).max() < 1e-3


def test_the_simple_form_is_the_regular_field_and_bicubic_is_torch_bicubic(model):
    lr = texture(3, 12, 10)
    field = regular_field(np.zeros((1, 2)), (2.0, 2.0), (24, 20))
    for mode in ("fast", "diffusion"):
        np.testing.assert_array_equal(
            model.upscale(lr, 2.0, mode=mode),
            model.upscale_batch(lr[None], field, None, None, mode)[0],
        )
    reference = F.interpolate(torch.from_numpy(lr)[None], scale_factor=2, mode="bicubic")
    out = BicubicUpscaler().upscale(lr, 2.0)
    np.testing.assert_allclose(out, reference[0].clamp(0, 1).numpy(), atol=1e-5)


def test_field_cell_and_extension_are_exact_for_affine_fields():
    field = rotated_field(0, 0, 16)
    cell = field_cell(field)
    np.testing.assert_allclose(cell, 1 / 2.5, atol=1e-12)
    np.testing.assert_allclose(extend_field(field, 5), rotated_field(-5, -5, 26), atol=1e-9)
    np.testing.assert_allclose(
        field_cell(regular_field(np.zeros((1, 2)), (3.0, 1.5), (4, 5))),
        np.broadcast_to([1 / 3, 1 / 1.5], (1, 4, 5, 2)),
    )


def test_coordinate_noise_depends_on_absolute_pixels_only():
    rows, cols = torch.arange(10, 30)[None], torch.arange(-5, 15)[None]
    whole = coordinate_noise(7, 4, rows, cols)
    part = coordinate_noise(7, 4, rows[:, 5:], cols[:, 3:])
    torch.testing.assert_close(part, whole[..., 5:, 3:])
    assert not torch.equal(coordinate_noise(8, 4, rows, cols), whole)


def test_coordinate_noise_is_standard_normal():
    z = coordinate_noise(0, 2, torch.arange(256)[None], torch.arange(256)[None])
    assert abs(float(z.mean())) < 0.02
    assert abs(float(z.std()) - 1.0) < 0.02


@pytest.fixture(scope="module")
def gated() -> HNDSRUpscaler:
    """A small HNDSR with a cell gate whose (normally zero-initialised) weights are random."""
    torch.manual_seed(1)
    cfg = HNDSRConfig(feats=8, blocks=2, hidden=16, ae_width=8, refiner_width=8, cell_gate=True)
    net = HNDSR(cfg)
    with torch.no_grad():
        net.operator.cell_gate.weight.normal_(0.0, 0.5)
        net.operator.cell_gate.bias.fill_(0.5)
    return HNDSRUpscaler(net, "test-gated")


def test_a_new_cell_gate_computes_what_the_network_did_without_it(model):
    grown = HNDSR(HNDSRConfig(**{**vars(model.net.cfg), "cell_gate": True}))
    missing, _ = grown.load_state_dict(model.net.state_dict(), strict=False)
    assert sorted(missing) == ["operator.cell_gate.bias", "operator.cell_gate.weight"]
    lr = torch.from_numpy(texture(3, 12, 12))[None]
    inputs = regular_inputs(lr, (2.5, 2.5), (30, 30), np.zeros((1, 2)))
    with torch.no_grad():
        assert torch.equal(grown.fast(lr, *inputs), model.net.fast(lr, *inputs))


def test_the_cell_gate_steps_at_lr_cell_edges_only(gated):
    """Sampled just either side of x = 5 (an LR cell edge), the gated output jumps by about
    share x the step between the two cells; either side of x = 5.5 (inside a cell) it does not."""
    lr = torch.from_numpy(texture(3, 10, 10, seed=3))[None]
    eps = 1e-3  # past the edge tolerance
    xs = torch.tensor([5 - eps, 5 + eps, 5.5 - eps, 5.5 + eps], dtype=torch.float64)
    coords = torch.stack([xs, torch.full_like(xs, 4.5)], dim=-1)[None, None].float()
    cell = torch.full_like(coords, 0.4)
    with torch.no_grad():
        out = gated.net.fast(lr, coords, cell)[0, :, 0]
    edge, inside = (out[:, 1] - out[:, 0]).abs(), (out[:, 3] - out[:, 2]).abs()
    assert edge.max() > 0.01
    assert inside.max() < 2e-3


@pytest.mark.parametrize("scale", [(2.5, 2.5), (3.0, 2.0)])
def test_adjacent_tiles_of_a_gated_model_stitch(gated, scale):
    lr_global = texture(3, 120, 120, seed=5)[None]
    big = tile(gated, lr_global, scale, 60, 60, 64, "fast")
    left = tile(gated, lr_global, scale, 60, 60, 32, "fast")
    right = tile(gated, lr_global, scale, 92, 60, 32, "fast")
    assert np.abs(np.concatenate([left, right], axis=2) - big[:, :32]).max() < 1e-3
