"""The degradation model: kernels, exact sub-pixel geometry, noise, quantisation, codecs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sr_engine.bicubic import bicubic_at
from sr_engine.interface import regular_field
from training.degradations import (
    KERNELS,
    DegradationConfig,
    PatchDegradation,
    apply,
    axis_matrix,
    degrade_batch,
)

MIXED = DegradationConfig(clean_prob=0.0)


@pytest.mark.parametrize("hr_len,lr_len", [(64, 32), (64, 21), (60, 7), (48, 40)])
def test_unshifted_bicubic_is_torch_antialiased_bicubic(hr_len, lr_len):
    x = torch.rand(1, 1, 5, hr_len, dtype=torch.float64)
    ref = F.interpolate(x, size=(5, lr_len), mode="bicubic", antialias=True, align_corners=False)
    mine = x[0, 0] @ torch.from_numpy(axis_matrix(hr_len, lr_len, "bicubic")).T
    torch.testing.assert_close(mine, ref[0, 0], atol=1e-6, rtol=0)


def test_integer_area_is_box_averaging():
    x = torch.rand(1, 1, 4, 48, dtype=torch.float64)
    mine = x[0, 0] @ torch.from_numpy(axis_matrix(48, 12, "area")).T
    torch.testing.assert_close(mine, F.avg_pool2d(x, (1, 4))[0, 0])


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("scale,shift", [(2.0, 0.3), (3.2, -0.45), (5.0, 0.1)])
def test_lr_pixels_sit_where_the_origin_says(kernel, scale, shift):
    """On a linear ramp every symmetric kernel returns the ramp at the LR pixel centre, so
    bicubic sampling of the LR at origin -shift gives back the HR ramp (inside the border).
    HR pixels are a staircase of the ramp, so a kernel's mean is its centre to 0.05 HR px; the
    sampler's a = -0.75 cubic reproduces a ramp to 0.05 LR px (a wrong origin is >= 0.1)."""
    big = 96
    lr_len = round(big / scale)
    s = big / lr_len
    ramp = (np.arange(big) + 0.5) / big  # HR pixel centres
    lr = axis_matrix(big, lr_len, kernel, 0.5, shift) @ ramp
    tol = 0.05 / big
    centres = (np.arange(lr_len) + 0.5 + shift) * s / big
    np.testing.assert_allclose(lr[3:-3], centres[3:-3], atol=tol, rtol=0)
    img = torch.from_numpy(np.tile(lr, (lr_len, 1))).float()[None, None]
    field = regular_field(np.array([[-shift, 0.0]]), (s, s), (big, big))
    out = bicubic_at(img, torch.from_numpy(field))[0, 0, 0]
    inner = slice(int(3 * s) + 4, big - int(3 * s) - 4)
    np.testing.assert_allclose(out[inner].numpy(), ramp[inner], atol=tol + 0.05 * s / big, rtol=0)


def test_gaussian_width_follows_sigma():
    narrow, wide = (axis_matrix(64, 16, "gaussian", f) for f in (0.3, 0.8))
    k = np.arange(64) + 0.5
    spread = lambda m: np.sqrt((m[8] * (k - (m[8] * k).sum()) ** 2).sum())  # noqa: E731
    assert spread(narrow) == pytest.approx(np.sqrt((0.3 * 4) ** 2 + 1 / 12), rel=0.05)
    assert spread(wide) == pytest.approx(np.sqrt((0.8 * 4) ** 2 + 1 / 12), rel=0.05)


def test_rows_sum_to_one_also_at_the_border():
    for kernel in KERNELS:
        np.testing.assert_allclose(axis_matrix(50, 13, kernel, 0.6, 0.4).sum(1), 1.0)


def test_mixed_batch_is_8_bit_with_per_patch_draws_and_origins_minus_shift():
    rng = np.random.default_rng(0)
    hr = torch.rand(16, 3, 48, 48)
    lr, origins, draws = degrade_batch(hr, (16, 16), rng, MIXED)
    assert lr.shape == (16, 3, 16, 16)
    np.testing.assert_allclose(lr * 255, (lr * 255).round(), atol=1e-4)
    np.testing.assert_allclose(origins, -np.array([d.shift for d in draws]))
    assert len({d.kernel for d in draws}) == 3 and any(d.codec for d in draws)
    assert all(abs(o) <= MIXED.shift_max for o in origins.ravel())


def test_clean_draws_are_the_protocol_degradation():
    rng = np.random.default_rng(0)
    hr = torch.rand(4, 3, 40, 40)
    lr, origins, draws = degrade_batch(hr, (20, 20), rng, DegradationConfig())
    assert not origins.any() and {d.kernel for d in draws} == {"bicubic"}
    ref = F.interpolate(hr, size=(20, 20), mode="bicubic", antialias=True, align_corners=False)
    torch.testing.assert_close(lr, (ref.clamp(0, 1) * 255).round() / 255, atol=1 / 255, rtol=0)


def test_noise_and_compression_change_the_patch_as_drawn():
    hr = F.interpolate(torch.rand(1, 1, 16, 16), size=(64, 64), mode="bilinear")[0].expand(
        3, -1, -1
    )
    gen = torch.Generator().manual_seed(0)
    clean = PatchDegradation("area", (0.0, 0.0), (0.0, 0.0), 0.0, 0.0, "", 0)
    noisy = PatchDegradation("area", (0.0, 0.0), (0.0, 0.0), 0.01, 0.0, "", 0)
    jpeg = PatchDegradation("area", (0.0, 0.0), (0.0, 0.0), 0.0, 0.0, "jpeg", 60)
    a, b, c = (apply(hr, (32, 32), d, gen) for d in (clean, noisy, jpeg))
    assert 0.005 < float((b - a).std()) < 0.015
    assert 0.001 < float((c - a).abs().mean()) < 0.03


def test_unknown_settings_are_refused():
    with pytest.raises(ValueError, match="unknown degradation"):
        DegradationConfig.from_dict({"blur": 1})
