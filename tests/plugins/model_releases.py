"""Pytest fixtures for the model registry: real checkpoints and real (small) evaluations.

- ``release_dir(name, perturb)``: an exported checkpoint (the shipped weights, or the shipped
  weights with Gaussian noise added: a deliberately worse model) plus ``eval.json`` (the UC
  Merced report's shape with its two ship gates, measured on chips of the sample scene)
  and ``eval_tiles.json`` (the tile-path evaluation's pinned shape, fast and bicubic rows of
  the same measurement, with a "fast beats bicubic" gate per scale).
- ``postgres_database``: a scratch PostgreSQL database (dropped at teardown), as a URI.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from sr_engine.checkpoint import (
    DEFAULT_CHECKPOINT,
    load_checkpoint,
    read_network,
    save_checkpoint,
)
from sr_engine.model import HNDSRUpscaler
from training.data import scene_chips
from training.protocol import BASELINES, baseline, make_eval_pair, model_sr, scores

SCENE = "landsat8/LC08_L1TP_224078_20200518_rgb8.tif"
SCALES = ((2.0, 2.0), (4.0, 4.0))
POSTGRES = "postgresql://postgres@127.0.0.1:5432"


def _score_scale(up: HNDSRUpscaler, chips: list, scale: tuple[float, float]) -> dict:
    """Mean luma PSNR/SSIM of the baselines, ``fast`` and ``diffusion`` at one scale."""
    acc: dict[str, list[dict]] = {}
    for chip in chips:
        hr, lr = make_eval_pair(chip, scale)
        size = (int(hr.shape[-2]), int(hr.shape[-1]))
        outs = {b: baseline(b, lr, size) for b in BASELINES}
        outs["fast"] = model_sr(up, lr, size, scale, "fast")
        outs["diffusion"] = model_sr(up, lr, size, scale, "diffusion", 0)
        for name, sr in outs.items():
            acc.setdefault(name, []).append(scores(sr, hr, scale))
    methods = {
        m: {k: float(np.mean([v[k] for v in values])) for k in values[0]}
        for m, values in acc.items()
    }
    best = max(methods[b]["psnr"] for b in BASELINES)
    return {
        "scale": list(scale),
        "methods": methods,
        "fast_gain_db": methods["fast"]["psnr"] - best,
        "diffusion_gain_db": methods["diffusion"]["psnr"] - best,
    }


def evaluate_release(weights: Path, chips: list) -> tuple[dict, dict]:
    """(UC Merced-shaped report, tile-path-shaped report) of the checkpoint at ``weights``."""
    up: HNDSRUpscaler = load_checkpoint(weights, device="cpu")  # type: ignore[assignment]
    rows = [_score_scale(up, chips, scale) for scale in SCALES]
    report = {
        "version": up.version,
        "checkpoint_sha256": up.card["weights_sha256"],
        "images": len(chips),
        "rows": rows,
        "gates": {
            "fast_beats_best_baseline_everywhere": all(r["fast_gain_db"] > 0 for r in rows),
            "diffusion_beats_best_baseline_everywhere": all(
                r["diffusion_gain_db"] > 0 for r in rows
            ),
        },
    }
    tile_rows, gates = [], []
    for row in rows:
        scale = int(row["scale"][0])
        for method, source in (("fast", "fast"), ("bicubic", "torch_bicubic")):
            scores = row["methods"][source]
            tile_rows.append(
                {
                    "scene": "sample-landsat8",
                    "degradation": "area",
                    "scale": scale,
                    "method": method,
                    "psnr": scores["psnr"],
                    "ssim": scores.get("ssim", 0.0),
                    "tiles": len(chips),
                }
            )
        gain = row["methods"]["fast"]["psnr"] - row["methods"]["torch_bicubic"]["psnr"]
        gates.append(
            {
                "name": f"fast_beats_bicubic_x{scale}",
                "value": gain,
                "threshold": 0.0,
                "passed": gain > 0.0,
            }
        )
    tiles = {
        "checkpoint": str(weights),
        "model_version": up.version,
        "settings": {"scales": [s[0] for s in SCALES], "chips": len(chips)},
        "rows": tile_rows,
        "summary": {},
        "gates": gates,
        "passed": all(g["passed"] for g in gates),
    }
    return report, tiles


@pytest.fixture(scope="session")
def release_dir(
    tmp_path_factory: pytest.TempPathFactory, sample_scene: Path
) -> Callable[[str, float], Path]:
    """Factory: an export folder (weights, card, eval.json, eval_tiles.json), made once per name."""
    chips = scene_chips(sample_scene / SCENE, 64, 2)
    made: dict[str, Path] = {}

    def make(name: str, perturb: float = 0.0) -> Path:
        if name in made:
            return made[name]
        out = tmp_path_factory.mktemp(f"release-{name}")
        weights = out / "hndsr.safetensors"
        if perturb:
            net = read_network(DEFAULT_CHECKPOINT)
            generator = torch.Generator().manual_seed(0)
            with torch.no_grad():
                for tensor in net.operator.parameters():
                    noise = torch.randn(tensor.shape, generator=generator)
                    tensor.add_(noise * perturb * tensor.std().clamp_min(1e-3))
            card = json.loads(DEFAULT_CHECKPOINT.with_suffix(".json").read_text())
            save_checkpoint(net, weights, {"data": card["data"]})
        else:
            shutil.copyfile(DEFAULT_CHECKPOINT, weights)
            shutil.copyfile(DEFAULT_CHECKPOINT.with_suffix(".json"), out / "hndsr.json")
        report, tiles = evaluate_release(weights, chips)
        (out / "eval.json").write_text(json.dumps(report))
        (out / "eval_tiles.json").write_text(json.dumps(tiles))
        made[name] = out
        return out

    return make


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database on 127.0.0.1:5432 (trust auth), dropped afterwards."""
    if shutil.which("psql") is None:
        pytest.skip("psql is not installed: no PostgreSQL to test against")
    name = f"mlflow_{uuid.uuid4().hex[:10]}"
    probe = subprocess.run(
        ["psql", f"{POSTGRES}/postgres", "-c", f"CREATE DATABASE {name}"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is not usable: {probe.stderr.strip()}")
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"  # SQLAlchemy 2.1's
        # default postgresql driver is psycopg 3; the dev extra installs psycopg2-binary
    finally:
        subprocess.run(
            ["psql", f"{POSTGRES}/postgres", "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
            capture_output=True,
        )
