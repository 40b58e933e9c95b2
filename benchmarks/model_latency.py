"""Per-tile latency of the HNDSR modes next to bicubic: 256x256 output at scales 2 and 4.

    python benchmarks/model_latency.py [--checkpoint PATH] [--repeats 10] [--device cpu]

Each call gets the LR window the runtime would cut for a 256-px tile (the tile's footprint
plus the model's halo on every side); prints the median and p90 milliseconds per tile.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch

from sr_engine import BicubicUpscaler, load_model

TILE = 256


def time_call(fn, repeats: int) -> list[float]:
    """Milliseconds of ``repeats`` calls after one warm-up call."""
    fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000.0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", default=None, help="default: the shipped checkpoint")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    model = load_model(args.checkpoint, device=args.device)
    bicubic = BicubicUpscaler()
    print(
        f"model {model.version}, halo {model.halo} LR px, device {args.device}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"{'scale':>5} {'mode':>10} {'median ms':>10} {'p90 ms':>8}")
    rng = np.random.default_rng(0)
    for scale in (2.0, 4.0):
        side = math.ceil(TILE / scale) + 1 + 2 * model.halo
        lr = rng.random((1, 3, side, side), dtype=np.float32)
        origins = np.array([[model.halo + 0.25, model.halo + 0.25]])
        calls = {
            "bicubic": lambda lr=lr, o=origins, s=scale: bicubic.upscale_batch(
                lr, (s, s), (TILE, TILE), o
            ),
        }
        for mode in ("fast", "diffusion"):
            calls[mode] = lambda lr=lr, o=origins, s=scale, m=mode: model.upscale_batch(
                lr, (s, s), (TILE, TILE), o, np.zeros((1, 2), np.int64), m, 0
            )
        for mode, fn in calls.items():
            ms = sorted(time_call(fn, args.repeats))
            p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
            print(f"{scale:>5g} {mode:>10} {statistics.median(ms):>10.1f} {p90:>8.1f}")


if __name__ == "__main__":
    main()
