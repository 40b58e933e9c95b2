"""Per-tile latency of the HNDSR modes next to bicubic: 256x256 output at scales 2, 3 and 4,
for a checkpoint and (optionally) a baseline checkpoint, measured in one run.

    python benchmarks/model_latency.py [--checkpoint PATH] [--baseline PATH | --baseline-rev REV]
                                       [--repeats 10] [--device cpu]

Each call gets the LR window the runtime would cut for a 256-px tile (the tile's footprint
plus that model's halo on every side). The models' calls are interleaved repeat by repeat, so
a machine whose load changes during the run slows both alike. Prints the median and p90
milliseconds per tile and, with a baseline, the ratio of the medians (new / baseline).
``--baseline-rev`` reads the checkpoint shipped at a git revision (e.g. ``19c3884``, the
checkpoint before issue 11), so the comparison needs no file outside the repository.
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from sr_engine import BicubicUpscaler, load_model
from sr_engine.checkpoint import DEFAULT_CHECKPOINT
from sr_engine.interface import regular_field

TILE = 256
SCALES = (2.0, 3.0, 4.0)


def checkpoint_at(rev: str, folder: Path) -> Path:
    """Write the checkpoint (weights + card) shipped at git revision ``rev`` into ``folder``."""
    root = Path(__file__).resolve().parents[1]
    rel = DEFAULT_CHECKPOINT.relative_to(root)
    for path in (rel, rel.with_suffix(".json")):
        blob = subprocess.run(
            ["git", "show", f"{rev}:{path.as_posix()}"], cwd=root, capture_output=True, check=True
        ).stdout
        (folder / path.name).write_bytes(blob)
    return folder / rel.name


def tile_calls(model, scale: float, modes: tuple[str, ...]) -> dict[str, Callable[[], object]]:
    """One 256-px tile per mode, on the LR window the runtime would cut for ``model``."""
    side = math.ceil(TILE / scale) + 1 + 2 * model.halo
    lr = np.random.default_rng(0).random((1, 3, side, side), dtype=np.float32)
    origins = np.array([[model.halo + 0.25, model.halo + 0.25]])
    field = regular_field(origins, (scale, scale), (TILE, TILE))
    offsets = np.zeros((1, 2), np.int64)

    def call(mode: str) -> Callable[[], object]:
        return lambda: model.upscale_batch(lr, field, None, offsets, mode)

    return {mode: call(mode) for mode in modes}


def measure(calls: dict, repeats: int) -> dict:
    """Milliseconds of each call, ``repeats`` times, interleaved, after one warm-up each."""
    for fn in calls.values():
        fn()
    times: dict = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000.0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", default=None, help="default: the shipped checkpoint")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--baseline", default=None, help="a checkpoint to compare with")
    group.add_argument("--baseline-rev", default=None, help="the checkpoint shipped at a git rev")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        baseline_path = args.baseline
        if args.baseline_rev:
            baseline_path = checkpoint_at(args.baseline_rev, Path(tmp))
        models = {"new": load_model(args.checkpoint, device=args.device)}
        if baseline_path is not None:
            models["baseline"] = load_model(baseline_path, device=args.device)
    print(f"device {args.device}, torch threads {torch.get_num_threads()}")
    for name, model in models.items():
        params = getattr(model, "card", {}).get("parameters_by_part", {}).get("operator", "?")
        print(f"{name}: {model.version}, halo {model.halo} LR px, operator {params} parameters")
    print(f"{'scale':>5} {'model':>9} {'mode':>10} {'median ms':>10} {'p90 ms':>8}")
    for scale in SCALES:
        calls = {("-", "bicubic"): tile_calls(BicubicUpscaler(), scale, ("bicubic",))["bicubic"]}
        for name, model in models.items():
            for mode, fn in tile_calls(model, scale, ("fast", "diffusion")).items():
                calls[(name, mode)] = fn
        times = measure(calls, args.repeats)
        medians = {}
        for (name, mode), ms in times.items():
            ms = sorted(ms)
            medians[(name, mode)] = statistics.median(ms)
            p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
            print(f"{scale:>5g} {name:>9} {mode:>10} {medians[(name, mode)]:>10.1f} {p90:>8.1f}")
        if "baseline" in models:
            for mode in ("fast", "diffusion"):
                ratio = medians[("new", mode)] / medians[("baseline", mode)]
                print(f"{scale:>5g} {'ratio':>9} {mode:>10} {ratio:>10.2f}  (new / baseline)")


if __name__ == "__main__":
    main()
