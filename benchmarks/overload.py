"""Overload: 300 concurrent distinct cold SR tiles (``auto``, then ``fast``) against one server.

The ``auto`` burst is at ``--zoom``, the ``fast`` one at the next zoom (distinct tiles).
First the server serves ``--warm`` cold SR tiles one at a time, as a server that has seen
traffic has: a fresh server knows no request's running time and admits only what finds a
render thread free (``--warm 0`` measures that first burst).
Prints per burst the status counts, p50/p99 latency (all answers, the 503s by who refused,
and the degraded-bicubic answers), the server's RSS before/peak/after, /healthz p99 while
the burst runs, and how many explicit ``sr=fast`` tiles succeed 15 s after it (an idle
server must admit them).

python -m benchmarks.overload [--tiles 300] [--zoom 14] [--after 15] [--warm 10]
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter

import httpx
import psutil

from benchmarks.common import centre_tiles, fetch_all, percentile, serve, tile_path


class Sampler:
    """Samples the server's RSS and /healthz latency in threads until stopped."""

    def __init__(self, base: str, process: psutil.Process) -> None:
        self.base, self.process = base, process
        self.rss: list[int] = []
        self.health: list[float] = []
        self.health_failures = 0
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._sample_rss),
            threading.Thread(target=self._ping),
        ]

    def _sample_rss(self) -> None:
        while not self._stop.is_set():
            self.rss.append(self.process.memory_info().rss)
            time.sleep(0.05)

    def _ping(self) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as client:
            while not self._stop.is_set():
                start = time.perf_counter()
                try:
                    ok = client.get("/healthz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.health.append(time.perf_counter() - start)
                self.health_failures += not ok
                time.sleep(0.1)

    def __enter__(self) -> Sampler:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def server_process() -> psutil.Process:
    """The uvicorn subprocess ``serve`` started (our only python child)."""
    children = [c for c in psutil.Process().children(recursive=True) if "uvicorn" in c.cmdline()]
    return children[-1]


def refusal_cause(body: bytes) -> str:
    """Who refused a 503: the render gate (before any work) or the SR runtime."""
    detail = json.loads(body or b"{}").get("detail", "")
    return "render gate" if "server busy" in detail else "SR runtime"


def burst(
    base: str,
    mode: str,
    tiles: list[tuple[int, int, int]],
    after_s: float,
    check_tiles: list[tuple[int, int, int]],
) -> None:
    process = server_process()
    rss_before = process.memory_info().rss
    paths = [tile_path(*t, sr=mode) for t in tiles]
    with Sampler(base, process) as sampler:
        results, wall = fetch_all(base, paths, concurrency=len(paths))
    rss_after = process.memory_info().rss
    counts = Counter(r.status for r in results)
    modes = Counter(r.headers.get("x-sr-mode", "-") for r in results if r.status == 200)
    seconds = [r.seconds for r in results]
    refused = [r.seconds for r in results if r.status == 503]
    print(f"sr={mode}: {len(paths)} concurrent cold z{tiles[0][0]} tiles in {wall:.1f} s")
    print(f"  statuses {dict(sorted(counts.items()))}; 200 modes {dict(modes)}")
    print(f"  latency p50 {percentile(seconds, 50):.2f} s, p99 {percentile(seconds, 99):.2f} s")
    if refused:
        p50, p99 = percentile(refused, 50), percentile(refused, 99)
        print(f"  503 latency p50 {p50:.2f} s, p99 {p99:.2f} s")
        by_cause: dict[str, list[float]] = {}
        for r in results:
            if r.status == 503:
                by_cause.setdefault(refusal_cause(r.body), []).append(r.seconds)
        for cause, times in sorted(by_cause.items()):
            print(f"    {cause}: {len(times)}, p99 {percentile(times, 99):.2f} s")
    degraded = [r.seconds for r in results if r.headers.get("x-sr-mode") == "degraded-bicubic"]
    if degraded:
        p50, p99 = percentile(degraded, 50), percentile(degraded, 99)
        print(f"  degraded-bicubic latency p50 {p50:.2f} s, p99 {p99:.2f} s")
    peak = max(sampler.rss + [rss_before, rss_after])
    print(
        f"  RSS before {rss_before / 2**20:.0f} MiB, peak {peak / 2**20:.0f} MiB, "
        f"after {rss_after / 2**20:.0f} MiB"
    )
    print(
        f"  /healthz during the burst: p99 {percentile(sampler.health, 99) * 1000:.0f} ms, "
        f"max {max(sampler.health) * 1000:.0f} ms, {sampler.health_failures} failed "
        f"of {len(sampler.health)}"
    )
    time.sleep(after_s)
    fresh = [tile_path(*t, sr="fast") for t in check_tiles]
    later, _ = fetch_all(base, fresh, concurrency=1)
    ok = sum(r.status == 200 for r in later)
    print(f"  {after_s:.0f} s later: {ok}/{len(fresh)} explicit sr=fast tiles answered 200")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=300)
    parser.add_argument("--zoom", type=int, default=14)
    parser.add_argument("--after", type=float, default=15.0, help="idle seconds before the check")
    parser.add_argument("--warm", type=int, default=10, help="cold SR tiles served first, serially")
    args = parser.parse_args()
    # distinct cold tiles for each burst (the auto burst's tiles are recomputed and cached)
    bursts = {
        "auto": centre_tiles(args.zoom, args.tiles),
        "fast": centre_tiles(args.zoom + 1, args.tiles),
    }
    checks = centre_tiles(args.zoom + 2, 10)  # never part of a burst: cold when checked
    with serve() as base:
        if args.warm:
            warm = [tile_path(*t, sr="auto") for t in centre_tiles(args.zoom - 1, args.warm)]
            served, _ = fetch_all(base, warm, concurrency=1)
            modes = Counter(r.headers.get("x-sr-mode", str(r.status)) for r in served)
            print(f"warm-up: {len(warm)} cold z{args.zoom - 1} tiles one at a time, {dict(modes)}")
        for index, (mode, tiles) in enumerate(bursts.items()):
            burst(base, mode, tiles, args.after, checks[5 * index : 5 * index + 5])


if __name__ == "__main__":
    main()
