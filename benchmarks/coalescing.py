"""Coalescing: 50 identical concurrent cold requests -> model calls, and waiters' p95 / lone p95.

python -m benchmarks.coalescing [--clients 50] [--zoom 14]
"""

from __future__ import annotations

import argparse
from collections import Counter

from benchmarks.common import (
    centre_tiles,
    check_ok,
    fetch_all,
    metric,
    percentile,
    serve,
    tile_path,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--zoom", type=int, default=14)
    args = parser.parse_args()
    lone_tiles = centre_tiles(args.zoom, 6)
    shared_tile = centre_tiles(args.zoom, 7)[-1]
    with serve() as base:
        lone = []
        for tile in lone_tiles:  # one cold request at a time
            results, _ = fetch_all(base, [tile_path(*tile, sr="fast")], 1)
            check_ok(results)
            lone.append(results[0].seconds)
        calls = metric(base, "hndsr_sr_inferences_total", mode="fast")
        results, wall = fetch_all(
            base, [tile_path(*shared_tile, sr="fast")] * args.clients, args.clients
        )
        check_ok(results)
        calls = metric(base, "hndsr_sr_inferences_total", mode="fast") - calls
    lone_p95 = percentile(lone, 95)
    waiters_p95 = percentile([r.seconds for r in results], 95)
    labels = Counter(r.headers.get("x-cache") for r in results)
    print(f"{args.clients} identical concurrent cold fast requests, z{args.zoom}")
    print(f"  model calls: {calls:.0f}; identical bodies: {len({r.body for r in results}) == 1}")
    print(f"  X-Cache: {dict(labels)}")
    print(f"  lone cold p95 {lone_p95 * 1000:.0f} ms ({len(lone)} tiles)")
    print(f"  waiters p95 {waiters_p95 * 1000:.0f} ms; all answered in {wall * 1000:.0f} ms")
    print(f"waiters p95 / lone cold p95: {waiters_p95 / lone_p95:.2f}")


if __name__ == "__main__":
    main()
