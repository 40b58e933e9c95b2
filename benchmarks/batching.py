"""Batching gain: tiles/s and p95 latency with micro-batching vs ``max_batch=1``.

Two servers in turn (fresh caches), the same distinct cold ``fast`` tiles, at a
concurrency of 2 x max_batch, latency budget off (every request waits for its SR tile).
Prints both runs and the ratios.

    python -m benchmarks.batching [--max-batch 8] [--tiles 64] [--zoom 14]
"""

from __future__ import annotations

import argparse

from benchmarks.common import (
    centre_tiles,
    check_ok,
    fetch_all,
    metric,
    percentile,
    serve,
    tile_path,
)


def run(max_batch: int, paths: list[str], concurrency: int) -> tuple[float, float, float]:
    """(tiles/s, p95 seconds, mean batch size) of one server configuration."""
    env = {  # every request waits for its SR tile: no latency budget, no render-gate estimate
        "HNDSR_SR_MAX_BATCH": str(max_batch),
        "HNDSR_SR_LATENCY_BUDGET_MS": "0",
        "HNDSR_RENDER_QUEUE_WAIT_S": "0",
    }
    with serve(env) as base:
        count = metric(base, "hndsr_sr_batch_size_count")
        total = metric(base, "hndsr_sr_batch_size_sum")
        results, wall = fetch_all(base, paths, concurrency)
        check_ok(results)
        batches = metric(base, "hndsr_sr_batch_size_count") - count
        mean_batch = (metric(base, "hndsr_sr_batch_size_sum") - total) / batches
    return len(paths) / wall, percentile([r.seconds for r in results], 95), mean_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--tiles", type=int, default=64)
    parser.add_argument("--zoom", type=int, default=14)
    args = parser.parse_args()
    concurrency = 2 * args.max_batch
    paths = [tile_path(*t, sr="fast") for t in centre_tiles(args.zoom, args.tiles)]
    batched = run(args.max_batch, paths, concurrency)
    single = run(1, paths, concurrency)
    print(f"{len(paths)} distinct cold fast tiles, z{args.zoom}, concurrency {concurrency}")
    for name, (rate, p95, mean) in (
        (f"max_batch={args.max_batch}", batched),
        ("max_batch=1", single),
    ):
        print(f"  {name:12s} {rate:6.2f} tiles/s  p95 {p95 * 1000:7.0f} ms  mean batch {mean:4.1f}")
    print(f"throughput ratio (batching / max_batch=1): {batched[0] / single[0]:.2f}x")
    print(f"p95 ratio (batching / max_batch=1):        {batched[1] / single[1]:.2f}")


if __name__ == "__main__":
    main()
