"""Shadow cost: live SR latency without and with a slow 100% shadow model, in one run.

Paced load (``--clients`` clients, each pausing ``--think-ms`` between requests, so the live
runtime has idle gaps the shadow can use) of distinct cold ``sr=fast`` tiles against a server
with the real HNDSR model; then the same tiles against a server whose shadow is the same
model made slow (``--shadow-delay-ms`` added to each call: real compute plus a wait), at
``HNDSR_SHADOW_RATE=1``. Prints p50/p95 of both, the p95 ratio, and the shadow metrics.

The latency budget is off (``HNDSR_SR_LATENCY_BUDGET_MS=0``): a slow CPU answers late
instead of 503, so every tile counts.

python -m benchmarks.shadow [--tiles 32] [--zoom 15] [--clients 2] [--think-ms 200]
    [--shadow-delay-ms 200] [--rounds 1] [--device cpu|cuda|auto]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from fastapi import FastAPI

from benchmarks.common import centre_tiles, metric, percentile, serve, tile_path
from sr_engine import Upscaler, load_model
from sr_engine.checkpoint import DEFAULT_CHECKPOINT
from tileserver.app import create_app as create_real_app
from tileserver.settings import get_settings

APP = "benchmarks.shadow:create_app"
DELAY_FIELD = "bench_delay_s"
"""Card field of the slow copy: seconds added to every model call."""


class SlowUpscaler:
    """An upscaler that waits ``delay_s`` after every batch (a slower challenger)."""

    def __init__(self, inner: Upscaler, delay_s: float) -> None:
        self.inner, self.delay_s = inner, delay_s
        self.version = f"{inner.version}-slow"
        self.modes, self.default_mode, self.halo = inner.modes, inner.default_mode, inner.halo

    def upscale(self, *args: Any, **kwargs: Any) -> np.ndarray:
        return self.inner.upscale(*args, **kwargs)

    def upscale_batch(self, *args: Any, **kwargs: Any) -> np.ndarray:
        out = self.inner.upscale_batch(*args, **kwargs)
        time.sleep(self.delay_s)
        return out


def load_slow_aware(weights: Path | None) -> Upscaler:
    """The checkpoint at ``weights``; slowed down when its card has ``bench_delay_s``."""
    model = load_model(weights, device=get_settings().device)
    card = json.loads((weights or DEFAULT_CHECKPOINT).with_suffix(".json").read_text())
    delay = float(card.get(DELAY_FIELD, 0.0))
    return SlowUpscaler(model, delay) if delay else model  # type: ignore[return-value]


def create_app() -> FastAPI:
    """``uvicorn --factory benchmarks.shadow:create_app``: the real app and models."""
    return create_real_app(loader=load_slow_aware)


def slow_copy(folder: Path, delay_s: float) -> Path:
    """The shipped checkpoint copied into ``folder`` with ``bench_delay_s`` in its card."""
    weights = folder / DEFAULT_CHECKPOINT.name
    shutil.copyfile(DEFAULT_CHECKPOINT, weights)
    card = json.loads(DEFAULT_CHECKPOINT.with_suffix(".json").read_text())
    weights.with_suffix(".json").write_text(json.dumps({**card, DELAY_FIELD: delay_s}))
    return weights


def paced_load(base: str, paths: list[str], clients: int, think_s: float) -> list[float]:
    """Seconds of every response; ``clients`` clients share ``paths``, pausing between GETs."""

    async def run() -> list[float]:
        queue: asyncio.Queue[str] = asyncio.Queue()
        for path in paths:
            queue.put_nowait(path)
        seconds: list[float] = []
        statuses: list[int] = []

        async def client(http: httpx.AsyncClient) -> None:
            while not queue.empty():
                path = queue.get_nowait()
                start = time.perf_counter()
                response = await http.get(path)
                seconds.append(time.perf_counter() - start)
                statuses.append(response.status_code)
                await asyncio.sleep(think_s)

        async with httpx.AsyncClient(base_url=base, timeout=300) as http:
            await asyncio.gather(*(client(http) for _ in range(clients)))
        bad = [s for s in statuses if s != 200]
        if bad:
            raise RuntimeError(f"{len(bad)} live requests failed: {sorted(set(bad))}")
        return seconds

    return asyncio.run(run())


def shadow_summary(base: str) -> str:
    computed = metric(base, "hndsr_shadow_tiles_total")
    dropped = {r: metric(base, "hndsr_shadow_dropped_total", reason=r) for r in REASONS}
    psnr_n, psnr_sum = (metric(base, f"hndsr_shadow_psnr_db_{s}") for s in ("count", "sum"))
    lat_n, lat_sum = (metric(base, f"hndsr_shadow_latency_seconds_{s}") for s in ("count", "sum"))
    psnr = f"{psnr_sum / psnr_n:.1f} dB" if psnr_n else "-"
    latency = f"{lat_sum / lat_n * 1000:.0f} ms" if lat_n else "-"
    return (
        f"shadow: {computed:.0f} computed, dropped {dropped}; mean agreement PSNR {psnr}, "
        f"mean shadow call {latency}"
    )


REASONS = ("queue_full", "stale", "error")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=32)
    parser.add_argument("--zoom", type=int, default=15)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--think-ms", type=float, default=200.0)
    parser.add_argument("--shadow-delay-ms", type=float, default=200.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    paths = [tile_path(*t, sr="fast") for t in centre_tiles(args.zoom, args.tiles)]
    warm = [tile_path(*t, sr="fast") for t in centre_tiles(args.zoom + 1, 4)]
    p95: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="hndsr-shadow-") as scratch:
        slow = slow_copy(Path(scratch), args.shadow_delay_ms / 1000)
        common = {"HNDSR_SR_LATENCY_BUDGET_MS": "0", "HNDSR_DEVICE": args.device}
        variants = {
            "off": common,
            "on": {**common, "HNDSR_SHADOW_MODEL_URI": str(slow), "HNDSR_SHADOW_RATE": "1"},
        }
        for round_ in range(args.rounds):
            for name, env in variants.items():
                with serve(env, APP) as base:
                    paced_load(base, warm, 1, 0.0)  # first requests: GDAL and PNG warm-up
                    seconds = paced_load(base, paths, args.clients, args.think_ms / 1000)
                    p95[name].append(percentile(seconds, 95))
                    print(
                        f"round {round_ + 1} shadow {name}: {len(seconds)} live tiles, "
                        f"p50 {percentile(seconds, 50) * 1000:.0f} ms, "
                        f"p95 {percentile(seconds, 95) * 1000:.0f} ms"
                    )
                    if name == "on":
                        time.sleep(1.0)  # the last offered shadow jobs finish or go stale
                        print(f"  {shadow_summary(base)}")
    ratio = float(np.mean(p95["on"]) / np.mean(p95["off"]))
    print(f"live p95 with / without the slow 100% shadow: {ratio:.2f}")


if __name__ == "__main__":
    main()
