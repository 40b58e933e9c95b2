"""ETL, degradation, evaluation protocol, quality measures and resumable stages."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from sr_engine.model import HNDSR, HNDSRConfig
from training.core import StageConfig, run_stage
from training.data import encode_png, make_pair, read_pack, split_of, stack_images, write_pack
from training.protocol import exact_sides, make_eval_pair
from training.quality import hf_energy, matched_noise, psnr, ssim

ROOT = Path(__file__).resolve().parents[1]


def test_split_is_a_function_of_the_content_hash_with_the_asked_fractions():
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(4000)]
    splits = [split_of(h, 0.1, 0.2) for h in hashes]
    assert splits == [split_of(h, 0.1, 0.2) for h in hashes]
    assert abs(splits.count("test") / 4000 - 0.2) < 0.03
    assert abs(splits.count("val") / 4000 - 0.1) < 0.03


def test_pack_round_trips_images_losslessly(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(5, 7), (9, 4)]]
    write_pack(tmp_path / "p.npz", [encode_png(i) for i in images], ["a", "b"])
    for a, b in zip(read_pack(tmp_path / "p.npz"), images, strict=True):
        np.testing.assert_array_equal(a, b)


def test_training_pairs_have_the_exact_scale_and_8_bit_values():
    rng = np.random.default_rng(1)
    hr = torch.rand(2, 3, 48, 40)
    for _ in range(20):
        lr, (sx, sy), _ = make_pair(hr, rng, 1.1, 8.0, 0.5)
        assert 1.0 < sx <= 8.0 and 1.0 < sy <= 8.0
        assert lr.shape[-1] * sx == pytest.approx(40) and lr.shape[-2] * sy == pytest.approx(48)
        np.testing.assert_allclose(lr * 255, (lr * 255).round(), atol=1e-4)


@pytest.mark.parametrize("scale", [1.1, 1.5, 2.5, 3.0, 6.0, 8.0])
def test_eval_pairs_crop_hr_to_an_exact_multiple(scale):
    lr_side, hr_side = exact_sides(256, scale)
    assert hr_side <= 256 and lr_side * scale == pytest.approx(hr_side)
    hr, lr = make_eval_pair(np.zeros((256, 250, 3), np.uint8), (scale, scale))
    assert hr.shape[-2:] == (hr_side, exact_sides(250, scale)[1])
    assert lr.shape[-2] == lr_side


def test_quality_measures_on_known_cases():
    gen = torch.Generator().manual_seed(0)
    y = torch.rand(2, 1, 64, 64, generator=gen)
    assert (psnr(y, y) > 100).all()
    torch.testing.assert_close(ssim(y, y), torch.ones(2))
    blurred = torch.nn.functional.avg_pool2d(y, 3, 1, 1)
    assert (hf_energy(blurred) < 0.5 * hf_energy(y)).all()
    target = hf_energy(y)
    noisy = matched_noise(blurred, target, gen)
    np.testing.assert_allclose(hf_energy(noisy).numpy(), target.numpy(), rtol=0.1)


def test_prepare_writes_a_manifest_with_sha256_of_every_file_and_the_split(tmp_path):
    src = tmp_path / "hr"
    src.mkdir()
    rng = np.random.default_rng(2)
    for i in range(12):
        img = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(img).save(src / f"img{i}.png")
    data = {"source": str(src), "val_fraction": 0.2, "test_fraction": 0.2, "train_crop": 32}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"data": data}))
    runs = []
    for out in ("a", "b"):
        cmd = [sys.executable, "-m", "training.prepare", "--params", "params.yaml", "--out", out]
        subprocess.run(cmd, cwd=tmp_path, check=True, env={"PYTHONPATH": str(ROOT)})
        runs.append(json.loads((tmp_path / out / "manifest.json").read_text()))
    first, second = runs
    assert first["split_sha256"] == second["split_sha256"]
    assert len(first["files"]) == 12
    for entry in first["files"]:
        raw = (src / entry["file"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(raw).hexdigest()
    assert sum(first["counts"].values()) == 12
    assert all(first["packs"][s]["sha256"] for s in ("train", "val", "test"))


def test_a_stage_resumes_from_its_last_state(tmp_path):
    torch.manual_seed(0)
    net = HNDSR(HNDSRConfig(feats=8, blocks=1, hidden=8, ae_width=8, refiner_width=8))
    images = stack_images([np.random.default_rng(3).integers(0, 256, (40, 40, 3), np.uint8)] * 4)
    cfg = StageConfig(steps=4, batch=2, patch=24, log_every=2, ckpt_every=100)
    state = tmp_path / "operator.pt"
    first = run_stage("operator", net, images, cfg, "cpu", state)
    assert first["steps"] == 4 and state.exists()
    done_steps: list[int] = []
    cfg.steps = 7
    second = run_stage(
        "operator", net, images, cfg, "cpu", state, on_step=lambda s, _: done_steps.append(s)
    )
    assert second["steps"] == 7
    assert done_steps == [5, 6, 7]


def test_scene_areas_are_disjoint_full_height_stripes_inside_the_scene(tmp_path):
    import rasterio
    from rasterio.transform import from_origin

    from training.data import scene_areas

    path = tmp_path / "scene.tif"
    profile = {"driver": "GTiff", "width": 300, "height": 120, "count": 3, "dtype": "uint8"}
    with rasterio.open(path, "w", **profile, transform=from_origin(0, 0, 1, 1)) as dst:
        dst.write(np.zeros((3, 120, 300), np.uint8))
    areas = scene_areas(path)
    assert set(areas) == {"train", "val", "test"}
    windows = sorted((w, s) for s, ws in areas.items() for w in ws)
    assert [s for _, s in windows] == ["train", "val", "test"]
    for (a, _), (b, _) in zip(windows, windows[1:], strict=False):
        assert a[2] + 16 <= b[0]  # a guard band between splits
    for (col0, row0, col1, row1), _ in windows:
        assert 0 <= col0 < col1 <= 300 and (row0, row1) == (0, 120)
    assert windows[-1][0][2] == 300 and scene_areas(path) == areas


def test_learning_rate_schedules_are_named():
    from training.core import learning_rate

    cfg = StageConfig(lr=1e-3)
    assert learning_rate(cfg, 0.0) == pytest.approx(1e-3)
    assert learning_rate(cfg, 1.0) == pytest.approx(1e-4)
    assert learning_rate(StageConfig(lr=1e-3, schedule="constant"), 0.7) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="unknown schedule"):
        learning_rate(StageConfig(schedule="step"), 0.5)


def test_train_stages_runs_the_stages_in_order_and_tunes_after_the_refiner(tmp_path):
    from training.core import train_stages

    torch.manual_seed(0)
    net = HNDSR(HNDSRConfig(feats=8, blocks=1, hidden=8, ae_width=8, refiner_width=8))
    img = np.random.default_rng(4).integers(0, 256, (40, 40, 3), np.uint8)
    section = {"steps": 2, "batch": 2, "patch": 24, "log_every": 1}
    params = {
        "train": {"seed": 0, "autoencoder": section, "operator": section, "refiner": section},
        "evaluate": {
            "tune_images": 1,
            "tune_scales": [2.0],
            "diffusion_steps": [1],
            "temperatures": [0.5, 1.0],
            "max_psnr_drop": 5.0,
        },
    }
    seen: list[tuple[str, int]] = []
    done: list[str] = []
    report = train_stages(
        net,
        ["autoencoder", "operator", "refiner"],
        stack_images([img] * 3),
        [img],
        params,
        "cpu",
        lambda stage: tmp_path / f"{stage}.pt",
        overrides={"operator": {"steps": 3}},
        on_log=lambda stage, step, _: seen.append((stage, step)),
        on_done=lambda stage, _: done.append(stage),
    )
    assert done == ["autoencoder", "operator", "refiner"]
    assert [s for s, _ in seen].count("operator") == 3 and report["operator"]["steps"] == 3
    assert report["diffusion_tuning"]["chosen"]["temperature"] == net.cfg.temperature
    assert all((tmp_path / f"{s}.pt").exists() for s in done)
