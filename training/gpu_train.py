"""Full training on a lent GPU with nothing but torch, numpy, Pillow, PyYAML and safetensors.

Here:   python -m training.gpu_train pack --prepared artifacts/prepared --out artifacts/gpu/pack.npz
There:  python -m training.gpu_train train --pack artifacts/gpu/pack.npz --out $OUT --seconds 300

``train`` runs the driver of ``training.train`` (``training.core.train_stages``: the same
stage loops, schedules, degradations and diffusion tuning, from params.yaml) on a
wall-clock budget split across the three stages, and writes ``hndsr.safetensors`` + card
and ``metrics.json`` into ``--out`` after every stage, so a run cut short still returns its
last checkpoint. Evaluation and MLflow logging happen afterwards on the CPU
(``python -m training.evaluate``, ``python -m training.tracking log-gpu <out>``).
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
from sr_engine.model import HNDSR, HNDSRConfig
from training.core import train_stages
from training.data import center_crop, encode_png, read_pack, stack_images, write_pack

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
    """The three stages on the GPU within ``seconds`` (``train_stages``, the driver of
    training.train), checkpoints and metrics into ``out`` after every stage."""
    t0 = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cudnn.benchmark = False  # LR sizes change every step
    with np.load(pack_path) as p:
        names = list(p["names"])
    images = read_pack(pack_path)
    train_imgs = [im for n, im in zip(names, images, strict=True) if n.startswith("train")]
    val_imgs = [im for n, im in zip(names, images, strict=True) if n.startswith("val")]
    torch.manual_seed(params["train"]["seed"])
    net = HNDSR(HNDSRConfig(**params["model"]))
    report: dict = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu"}
    out.mkdir(parents=True, exist_ok=True)
    log_lines: list[dict] = []
    overrides = {
        stage: {"batch": batch, "patch": patch, "steps": 10**9, "seconds": seconds * share}
        | {"log_every": 100, "ckpt_every": 10**9}
        for stage, share in SHARES.items()
    }

    def on_log(stage: str, step: int, metrics: dict) -> None:
        log_lines.append({"stage": stage, "step": step, **metrics})
        if step % 1000 == 0:
            print(stage, step, json.dumps(metrics), flush=True)

    def on_done(stage: str, stages: dict) -> None:
        (out / f"{stage}.pt").unlink()
        report.update(stages, wall_seconds=time.perf_counter() - t0)
        print(stage, "done", json.dumps(stages[stage]), flush=True)
        save_checkpoint(net.cpu(), out / "hndsr.safetensors", {"gpu_training": report})
        net.to(device)
        (out / "metrics.json").write_text(json.dumps({**report, "log": log_lines}) + "\n")

    train_stages(
        net,
        list(SHARES),
        stack_images(train_imgs, device),
        val_imgs,
        params,
        device,
        lambda stage: out / f"{stage}.pt",
        overrides,
        on_log=on_log,
        on_done=on_done,
    )
    chosen = report["diffusion_tuning"]["chosen"]
    print(json.dumps(chosen), f"{report['wall_seconds']:.0f}s")


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
