"""Full training on a lent GPU with nothing but torch, numpy, Pillow, PyYAML and safetensors.

Here:   python -m training.gpu_train pack --prepared artifacts/prepared --out artifacts/gpu/pack.npz
There:  python -m training.gpu_train train --pack artifacts/gpu/pack.npz --out $OUT --seconds 300

``train`` runs the same stage loops as ``training.train`` (training/core.py) on a
wall-clock budget split across the three stages, tunes the diffusion steps/temperature on
the packed validation images, and writes ``hndsr.safetensors`` + card and ``metrics.json``
into ``--out`` after every stage, so a run cut short still returns its last checkpoint.
Evaluation and MLflow logging happen afterwards on the CPU (training/evaluate.py,
training/log_external.py).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from sr_engine.checkpoint import save_checkpoint
from sr_engine.model import HNDSR, HNDSRConfig, HNDSRUpscaler
from training.core import StageConfig, run_stage
from training.data import center_crop, encode_png, read_pack, stack_images, write_pack
from training.protocol import tune_diffusion

SHARES = {"autoencoder": 0.10, "operator": 0.62, "refiner": 0.22}  # the rest: tuning


def pack(prepared: Path, out: Path, crop: int, val_images: int) -> None:
    """One file with the train split (centre crops) and a few validation images."""
    train = [encode_png(center_crop(img, crop)) for img in read_pack(prepared / "train.npz")]
    val = [encode_png(img) for img in read_pack(prepared / "val.npz")[:val_images]]
    out.parent.mkdir(parents=True, exist_ok=True)
    names = [f"train-{i}" for i in range(len(train))] + [f"val-{i}" for i in range(len(val))]
    write_pack(out, train + val, names)
    print(f"{out}: {len(train)} train + {len(val)} val, {out.stat().st_size / 1e6:.1f} MB")


def train(pack_path: Path, out: Path, seconds: float, params: dict, batch: int, patch: int):
    """Three stages on the GPU within ``seconds``, checkpoints and metrics into ``out``."""
    t0 = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cudnn.benchmark = False  # LR sizes change every step
    with np.load(pack_path) as p:
        names = list(p["names"])
    images = read_pack(pack_path)
    train_imgs = [im for n, im in zip(names, images, strict=True) if n.startswith("train")]
    val_imgs = [im for n, im in zip(names, images, strict=True) if n.startswith("val")]
    data = stack_images(train_imgs, device)
    torch.manual_seed(params["train"]["seed"])
    net = HNDSR(HNDSRConfig(**params["model"]))
    report: dict = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu"}
    out.mkdir(parents=True, exist_ok=True)
    log_lines: list[dict] = []
    for stage, share in SHARES.items():
        section = {**params["train"][stage], "batch": batch, "patch": patch}
        cfg = StageConfig.from_dict({**section, "steps": 10**9, "seconds": seconds * share})
        cfg.log_every, cfg.ckpt_every = 100, 10**9
        cfg.seed = params["train"]["seed"]

        def on_log(step: int, metrics: dict, stage: str = stage) -> None:
            log_lines.append({"stage": stage, "step": step, **metrics})
            if step % 1000 == 0:
                print(stage, step, json.dumps(metrics), flush=True)

        result = run_stage(stage, net, data, cfg, device, out / f"{stage}.pt", on_log)
        (out / f"{stage}.pt").unlink()
        report[stage] = result
        print(stage, "done", json.dumps(result), flush=True)
        save_checkpoint(net, out / "hndsr.safetensors", {"gpu_training": report})
        (out / "metrics.json").write_text(json.dumps({**report, "log": log_lines}) + "\n")
    up = HNDSRUpscaler(net, "tuning", device=device)
    ev = params["evaluate"]
    best, rows = tune_diffusion(
        up,
        val_imgs,
        ev["tune_scales"],
        ev["diffusion_steps"],
        ev["temperatures"],
        ev["max_psnr_drop"],
    )
    net.cfg.steps, net.cfg.temperature = int(best["steps"]), float(best["temperature"])
    report["diffusion_tuning"] = {"chosen": best, "grid": rows}
    report["wall_seconds"] = time.perf_counter() - t0
    save_checkpoint(net.cpu(), out / "hndsr.safetensors", {"gpu_training": report})
    (out / "metrics.json").write_text(json.dumps({**report, "log": log_lines}) + "\n")
    print(json.dumps(report["diffusion_tuning"]["chosen"]), f"{report['wall_seconds']:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--prepared", type=Path, default=Path("artifacts/prepared"))
    p.add_argument("--out", type=Path, default=Path("artifacts/gpu/pack.npz"))
    p.add_argument("--crop", type=int, default=144)
    p.add_argument("--val-images", type=int, default=24)
    t = sub.add_parser("train")
    t.add_argument("--pack", type=Path, default=Path("artifacts/gpu/pack.npz"))
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--params", type=Path, default=Path("params.yaml"))
    t.add_argument("--seconds", type=float, default=300.0)
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--patch", type=int, default=96)
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.prepared, args.out, args.crop, args.val_images)
    else:
        params = yaml.safe_load(args.params.read_text())
        train(args.pack, args.out, args.seconds, params, args.batch, args.patch)


if __name__ == "__main__":
    main()
