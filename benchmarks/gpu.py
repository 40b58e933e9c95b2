"""GPU benchmark: model-only tiles/s vs batch size, fp32 vs bf16, and through the runtime.

Needs only torch, numpy and this repository's ``sr_engine`` (no server, no MLflow, no DVC).
Uses the shipped checkpoint when ``sr_engine.load_model()`` has one, else the HNDSR
architecture with seeded untrained weights (the same computation per tile). 256-px tiles at
scale 4. Finishes in about 2 minutes on one H100; ``--quick`` is a CPU smoke run.

    python -m benchmarks.gpu [--device auto] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from prometheus_client import REGISTRY

from sr_engine import ModelUnavailableError, Upscaler, load_model
from sr_engine.device import DeviceConfig, device_config, inference_context
from sr_engine.interface import regular_field
from sr_engine.runtime import SRRuntime

SCALE = (4.0, 4.0)
TILE = (256, 256)
SECONDS_PER_POINT = 2.0


def model_for(config: DeviceConfig) -> Upscaler:
    """The shipped model, or the HNDSR architecture with untrained weights."""
    try:
        return load_model(device=config.name)
    except ModelUnavailableError:
        from sr_engine.model import HNDSR, HNDSRConfig, HNDSRUpscaler

        torch.manual_seed(0)
        return HNDSRUpscaler(HNDSR(HNDSRConfig()), "hndsr-untrained-bench", device=config.name)


def window_shape(model: Upscaler) -> tuple[int, int]:
    """LR window (h, w) of a 256-px tile at scale 4: the footprint plus the halo each side."""
    return tuple(int(t / s) + 1 + 2 * model.halo for t, s in zip(TILE, SCALE, strict=True))  # type: ignore[return-value]


def windows(model: Upscaler, count: int, seed: int = 0) -> np.ndarray:
    """``count`` random LR windows of a 256-px tile at scale 4 (halo included)."""
    shape = window_shape(model)
    return np.random.default_rng(seed).uniform(0, 1, (count, 3, *shape)).astype(np.float32)


def call(model: Upscaler, lr: np.ndarray, mode: str, config: DeviceConfig) -> np.ndarray:
    """One ``upscale_batch`` as the runtime makes it (host arrays in and out)."""
    origins = np.full((len(lr), 2), model.halo + 0.37)
    offsets = np.arange(len(lr) * 2).reshape(-1, 2) * 256
    with inference_context(config):
        field = regular_field(origins, SCALE, TILE)
        return model.upscale_batch(lr, field, None, offsets, mode=mode)


def on_worker_thread(function, *args):  # type: ignore[no-untyped-def]
    """Run on a fresh thread, as the runtime runs the model."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(function, *args).result()


def tiles_per_second(model: Upscaler, batch: int, mode: str, config: DeviceConfig) -> float:
    """Model-only throughput at one batch size (after a warm-up call)."""
    lr = windows(model, batch)
    call(model, lr, mode, config)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < SECONDS_PER_POINT or done == 0:
        call(model, lr, mode, config)
        done += batch
    return done / (time.perf_counter() - start)


def runtime_tiles_per_second(
    model: Upscaler, config: DeviceConfig, max_batch: int, jobs: int, clients: int
) -> tuple[float, float]:
    """End-to-end tiles/s and mean batch through ``SRRuntime`` with ``clients`` threads."""
    runtime = SRRuntime(
        model,
        max_batch=max_batch,
        max_wait_ms=2.0,
        queue_limit=jobs,
        latency_budget_s=None,
        device=config,
    )
    runtime.warm_up(out_shape=TILE, scale=SCALE[0], modes=("fast",))
    lr = windows(model, 64, seed=1)
    field = regular_field(np.full((1, 2), model.halo + 0.37), SCALE, TILE)[0]
    count, total = batch_size_samples()

    def client(index: int) -> None:
        for job in range(index, jobs, clients):
            runtime.upscale(lr[job % len(lr)], field, None, (job, 0))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    runtime.drain()
    new_count, new_total = batch_size_samples()
    return jobs / elapsed, (new_total - total) / (new_count - count)


def batch_size_samples() -> tuple[float, float]:
    """(count, sum) of ``hndsr_sr_batch_size`` in this process."""
    count = REGISTRY.get_sample_value("hndsr_sr_batch_size_count") or 0.0
    return count, REGISTRY.get_sample_value("hndsr_sr_batch_size_sum") or 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CPU smoke run)")
    args = parser.parse_args()
    global SECONDS_PER_POINT
    fp32 = device_config(args.device, autocast=False)
    bf16 = device_config(args.device)
    model = model_for(fp32)
    card = torch.cuda.get_device_name() if fp32.name == "cuda" else "CPU"
    print(f"device: {card}; torch {torch.__version__}; model {model.version}; halo {model.halo}")
    print(f"256-px tiles at scale 4 (LR window {window_shape(model)})")
    sizes = {"fast": (1, 8, 32, 128), "diffusion": (1, 8, 32, 64)}
    precisions = {"fp32": fp32}
    if bf16.autocast_dtype is not None:
        precisions["bf16"] = bf16
    jobs, clients = 1024, 256
    if args.quick:
        SECONDS_PER_POINT = 0.1
        sizes = {"fast": (1, 4), "diffusion": (1, 2)}
        precisions.setdefault("bf16", dataclasses.replace(fp32, autocast_dtype=torch.bfloat16))
        jobs, clients = 16, 8
    for mode, batch_sizes in sizes.items():
        print(f"\nmodel-only {mode} tiles/s (upscale_batch, host arrays in and out)")
        print("  batch " + "".join(f"{name:>10s}" for name in precisions))
        for batch in batch_sizes:
            row = []
            for config in precisions.values():
                try:
                    rate = on_worker_thread(tiles_per_second, model, batch, mode, config)
                    row.append(f"{rate:10.1f}")
                except torch.OutOfMemoryError:
                    row.append(f"{'OOM':>10s}")
                    torch.cuda.empty_cache()
            print(f"  {batch:5d} " + "".join(row))
    if "bf16" in precisions:
        lr = windows(model, 8, seed=2)
        for mode in sizes:
            low = on_worker_thread(call, model, lr, mode, precisions["bf16"])
            diff = low - on_worker_thread(call, model, lr, mode, fp32)
            print(f"bf16 vs fp32 {mode}: max |diff| {np.abs(diff).max() * 255:.2f} DN (of 255)")
    print(f"\nend-to-end through SRRuntime ({jobs} fast jobs from {clients} threads, fp32)")
    single, _ = runtime_tiles_per_second(model, fp32, 1, jobs, clients)
    print(f"  max_batch=1   {single:8.1f} tiles/s")
    for max_batch in (16, 64):
        rate, mean = runtime_tiles_per_second(model, fp32, max_batch, jobs, clients)
        print(f"  max_batch={max_batch:<3d} {rate:8.1f} tiles/s  mean batch {mean:5.1f}")
        print(f"    batching gain over max_batch=1: {rate / single:.2f}x")


if __name__ == "__main__":
    main()
