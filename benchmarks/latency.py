"""Cold tile latency of ``fast`` and ``bicubic`` over TiTiler's own cubic overzoom.

The same distinct tiles for each mode, one request at a time (every one a cache miss);
the baseline is ``sr=off&resampling=cubic&reproject=cubic``. Prints medians and ratios.

    python -m benchmarks.latency [--tiles 30] [--zoom 14]
"""

from __future__ import annotations

import argparse
import statistics

from benchmarks.common import centre_tiles, check_ok, fetch_all, serve, tile_path

MODES = {
    "cubic overzoom": {"sr": "off", "resampling": "cubic", "reproject": "cubic"},
    "bicubic": {"sr": "bicubic"},
    "fast": {"sr": "fast"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=30)
    parser.add_argument("--zoom", type=int, default=14)
    args = parser.parse_args()
    tiles = centre_tiles(args.zoom, args.tiles)
    medians = {}
    with serve() as base:
        for name, params in MODES.items():
            seconds = []
            for tile in tiles:
                results, _ = fetch_all(base, [tile_path(*tile, **params)], 1)
                check_ok(results)
                seconds.append(results[0].seconds)
            medians[name] = statistics.median(seconds)
    baseline = medians["cubic overzoom"]
    print(f"median cold latency of {len(tiles)} distinct 256-px tiles at z{args.zoom}")
    for name, median in medians.items():
        print(f"  {name:15s} {median * 1000:6.0f} ms  {median / baseline:4.2f}x cubic overzoom")


if __name__ == "__main__":
    main()
