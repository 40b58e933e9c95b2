"""A 1920x1080 map view: fill time of its tiles cold, then warm, 6 connections (a browser).

python -m benchmarks.viewport [--zoom 14] [--sr auto]
"""

from __future__ import annotations

import argparse
from collections import Counter

from benchmarks.common import check_ok, fetch_all, serve, tile_path, viewport_tiles

BROWSER_CONNECTIONS = 6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoom", type=int, default=14)
    parser.add_argument("--sr", default="auto")
    args = parser.parse_args()
    paths = [tile_path(*t, sr=args.sr) for t in viewport_tiles(args.zoom)]
    with serve() as base:
        cold, cold_s = fetch_all(base, paths, BROWSER_CONNECTIONS)
        warm, warm_s = fetch_all(base, paths, BROWSER_CONNECTIONS)
    check_ok(cold + warm)
    modes = dict(Counter(r.headers.get("x-sr-mode") for r in cold))
    labels = dict(Counter(r.headers.get("x-cache") for r in warm))
    print(f"1920x1080 view at z{args.zoom}: {len(paths)} tiles, sr={args.sr}")
    print(f"  ({BROWSER_CONNECTIONS} connections, like a browser over HTTP/1.1)")
    print(f"  cold fill {cold_s:6.2f} s  X-SR-Mode {modes}")
    print(f"  warm fill {warm_s:6.2f} s  X-Cache {labels}")
    print(f"cold / warm fill time: {cold_s / warm_s:.1f}x")


if __name__ == "__main__":
    main()
