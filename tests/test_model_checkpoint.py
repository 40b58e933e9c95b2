"""Checkpoints: the shipped one loads with its card; missing or corrupt ones are refused."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch

from sr_engine import ModelUnavailableError, load_model
from sr_engine.checkpoint import DEFAULT_CHECKPOINT, card_path, save_checkpoint
from sr_engine.interface import regular_field
from sr_engine.model import HNDSR, HNDSRConfig, regular_inputs


@pytest.fixture(scope="module")
def shipped():
    return load_model(device="cpu")


def test_shipped_checkpoint_is_small_and_described_by_its_card(shipped):
    assert DEFAULT_CHECKPOINT.stat().st_size <= 25 * 2**20
    assert re.fullmatch(r"hndsr-\d{8}-[0-9a-f]{8}", shipped.version)
    card = shipped.card
    assert card["version"] == shipped.version
    assert card["halo_lr_px"] == shipped.halo
    assert card["parameters"] == sum(p.numel() for p in shipped.net.parameters())
    assert card["data"]["split_sha256"] and card["autoencoder_recon_psnr_test"]["rgb_psnr"] > 0
    gates = card["evaluation"]["gates"]
    # never shipped when a mode loses to the best non-learned baseline anywhere
    assert gates["fast_beats_best_baseline_everywhere"]
    assert gates["diffusion_beats_best_baseline_everywhere"]


def test_shipped_model_upscales_all_modes(shipped):
    lr = np.random.default_rng(0).random((3, 20, 24), dtype=np.float32)
    for mode in shipped.modes:
        out = shipped.upscale(lr, 2.5, mode=mode)
        assert out.shape == (3, 50, 60) and np.isfinite(out).all()


def test_missing_checkpoint_raises_model_unavailable(tmp_path):
    with pytest.raises(ModelUnavailableError):
        load_model(tmp_path / "nothing.safetensors")


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    net = HNDSR(HNDSRConfig(feats=8, blocks=1, hidden=8, ae_width=8, refiner_width=8))
    path = tmp_path / "m.safetensors"
    save_checkpoint(net, path, {"note": "test"})
    return net, path


def test_save_then_load_gives_the_same_outputs(saved):
    net, path = saved
    model = load_model(path, device="cpu")
    lr = np.random.default_rng(1).random((1, 3, 10, 12), dtype=np.float32)
    with torch.no_grad():
        x = torch.from_numpy(lr)
        ref = net.fast(x, *regular_inputs(x, (2.0, 2.0), (20, 24), np.zeros((1, 2))))
    out = model.upscale_batch(lr, regular_field(np.zeros((1, 2)), (2.0, 2.0), (20, 24)))
    np.testing.assert_allclose(out, ref.clamp(0, 1).numpy(), atol=1e-6)
    assert model.card["note"] == "test"


def test_truncated_weights_raise_model_unavailable(saved):
    _, path = saved
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelUnavailableError):
        load_model(path)


def test_altered_weights_raise_model_unavailable(saved, tmp_path):
    _, path = saved
    other = tmp_path / "other.safetensors"
    torch.manual_seed(1)
    save_checkpoint(
        HNDSR(HNDSRConfig(feats=8, blocks=1, hidden=8, ae_width=8, refiner_width=8)), other
    )
    shutil.copyfile(other, path)  # weights no longer match the card's SHA-256
    with pytest.raises(ModelUnavailableError):
        load_model(path)


def test_missing_or_garbled_card_raises_model_unavailable(saved):
    _, path = saved
    card_path(path).write_text("{not json")
    with pytest.raises(ModelUnavailableError):
        load_model(path)
    card_path(path).unlink()
    with pytest.raises(ModelUnavailableError):
        load_model(path)


def test_card_records_what_the_server_and_readers_need(saved):
    _, path = saved
    card = json.loads(card_path(path).read_text())
    for key in (
        "version",
        "weights_sha256",
        "config",
        "parameters",
        "halo_lr_px",
        "receptive_field_lr_px",
    ):
        assert key in card
