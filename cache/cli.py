"""The cache commands: ``cache purge``, ``prewarm`` and ``worker`` (mounted by tileserver.cli).

The app that computes tiles is named by an import string (``module:factory``), resolved
only when a command needs it, so this package does not import ``tileserver``.
"""

from __future__ import annotations

import asyncio
import importlib
import signal
import threading
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import morecantile
import prometheus_client
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cache.prewarm import (
    Summary,
    TileSource,
    app_client,
    dataset_bounds,
    load_geojson,
    mosaic_covered,
    plan_tiles,
    run_prewarm,
    source_endpoint,
)
from cache.prewarm_queue import DEFAULT_STREAM, Worker, enqueue, worker_client
from cache.purge import PurgeFilter, purge_disk, purge_redis
from sr_engine.gpu_metrics import register_gpu_metrics
from sr_engine.modes import RequestMode

console = Console(soft_wrap=True)


def stop_on_ctrl_c() -> threading.Event:
    """An event that the first Ctrl-C sets (tiles in flight then finish, no new one starts);
    a second Ctrl-C raises KeyboardInterrupt as usual."""
    stop = threading.Event()

    def first_interrupt(signum: int, frame: Any) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, first_interrupt)
    return stop


def load_app(factory: str) -> Any:
    """Import ``module:callable`` and call it with no arguments (settings from HNDSR_*)."""
    module, _, name = factory.partition(":")
    return getattr(importlib.import_module(module), name)()


def _zooms(text: str) -> list[int]:
    low, _, high = text.partition("-")
    return list(range(int(low), int(high or low) + 1))


def purge(
    dataset: str | None = typer.Option(None, help="Dataset URL or path (as clients send it)."),
    zoom: str | None = typer.Option(None, help="Zoom range, e.g. 14-18 or 16."),
    model_version: str | None = typer.Option(None, help="Model version to purge."),
    cache_dir: Path | None = typer.Option(
        None, help="Disk cache folder (default: the server's, HNDSR_CACHE_DIR).", show_default=False
    ),
    redis_url: str | None = typer.Option(
        None, help="Redis tier (default: the server's, HNDSR_REDIS_URL).", show_default=False
    ),
    purge_all: bool = typer.Option(False, "--all", help="Purge every tile."),
) -> None:
    """Delete cached tiles by dataset, zoom range and/or model version (disk and Redis)."""
    if not (dataset or zoom or model_version or purge_all):
        raise typer.BadParameter("give --dataset, --zoom, --model-version or --all")
    zooms = _zooms(zoom) if zoom else None
    selection = PurgeFilter(
        dataset=dataset,
        min_zoom=zooms[0] if zooms else None,
        max_zoom=zooms[-1] if zooms else None,
        model_version=model_version,
    )
    if cache_dir is None:  # mounted without the server's default (tileserver.cli gives it)
        raise typer.BadParameter("give --cache-dir")
    deleted = purge_disk(cache_dir, selection) if cache_dir.exists() else 0
    console.print(f"disk ({cache_dir}): {deleted} tiles deleted")
    if redis_url:
        console.print(f"redis: {purge_redis(redis_url, selection)} tiles deleted")


def plan_prewarm(
    source: TileSource,
    zoom: str,
    bbox: str | None = None,
    geojson: Path | None = None,
) -> list[morecantile.Tile]:
    """The tiles to pre-warm: ``source``'s footprint (or ``bbox`` / ``geojson``) at ``zoom``;
    of a mosaic, those that one of its COGs covers."""
    area = tuple(float(v) for v in bbox.split(",")) if bbox else None
    tms = morecantile.tms.get(source.tms)
    tiles = list(
        plan_tiles(
            tms,
            dataset_bounds(source),
            _zooms(zoom),
            bbox=area,  # type: ignore[arg-type]
            geometries=load_geojson(geojson) if geojson else None,
        )
    )
    return mosaic_covered(source.url, tms, tiles) if source.endpoint == "mosaicjson" else tiles


def prewarm_local(
    app: Any,
    source: TileSource,
    tiles: list[morecantile.Tile],
    concurrency: int,
    progress_path: Path,
) -> Summary:
    """Compute ``tiles`` through ``app`` in this process with a progress bar; the first
    Ctrl-C lets tiles in flight finish (``summary.interrupted``), the progress file resumes."""
    summary = Summary()
    columns = (
        TextColumn("[bold]prewarm"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.1f} tiles/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("prewarm", total=len(tiles), rate=0.0)

        def advance(n: int) -> None:
            progress.update(task, advance=n, rate=summary.rate)

        stop = stop_on_ctrl_c()
        try:
            asyncio.run(
                run_prewarm(app, source, tiles, concurrency, summary, progress_path, advance, stop)
            )
        except KeyboardInterrupt:  # a second Ctrl-C: stop at once
            stop.set()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        summary.interrupted = stop.is_set()
    if summary.done + summary.skipped == summary.total:
        progress_path.unlink(missing_ok=True)
    return summary


def prewarm(
    url: str = typer.Argument(..., help="Dataset URL/path, a STAC item or a MosaicJSON."),
    zoom: str = typer.Option(..., help="Zoom range, e.g. 12-16."),
    stac: bool = typer.Option(False, help="URL is a STAC item (default for other *.json)."),
    mosaic: bool = typer.Option(False, help="URL is a MosaicJSON (default for *.mosaic.json)."),
    assets: list[str] = typer.Option([], help="STAC assets (repeat)."),
    bbox: str | None = typer.Option(None, help="west,south,east,north (lon/lat)."),
    geojson: Path | None = typer.Option(None, help="GeoJSON area (default: footprint)."),
    sr: RequestMode = typer.Option(RequestMode.AUTO, help="SR mode."),
    tms: str = typer.Option("WebMercatorQuad", help="Tile matrix set."),
    tilesize: int | None = typer.Option(None, help="Tile size as clients request it."),
    fmt: str | None = typer.Option(None, "--format", help="Tile format (png, webp...)."),
    param: list[str] = typer.Option([], help="Extra query parameter name=value (repeat)."),
    concurrency: int = typer.Option(8, min=1, help="Tiles in flight."),
    progress_file: Path | None = typer.Option(
        None, help="Resume file (default: .prewarm-<zoom>.progress)."
    ),
    dry_run: bool = typer.Option(False, help="Only count the tiles."),
    queue: str | None = typer.Option(None, help="redis:// URL: enqueue for workers."),
    stream: str = typer.Option(DEFAULT_STREAM, help="Redis Stream of the queue."),
    app: str = typer.Option(..., help="App factory (module:callable) that computes the tiles."),
) -> None:
    """Compute (or enqueue) every tile of an area and zoom range; skips cached tiles."""
    extra = [tuple(p.split("=", 1)) for p in param]
    extra += [("assets", a) for a in assets]
    source = TileSource(
        url=url,
        endpoint=source_endpoint(url, stac, mosaic),
        tms=tms,
        sr=str(sr),
        fmt=fmt,
        tilesize=tilesize,
        params=tuple((k, v) for k, v in extra),
    )
    tiles = plan_prewarm(source, zoom, bbox, geojson)
    console.print(f"{len(tiles)} tiles at zoom {zoom}")
    if dry_run:
        return
    if queue:
        added = asyncio.run(enqueue(queue, (source.path(t) for t in tiles), stream))
        console.print(f"enqueued {added} jobs on {stream}")
        return
    progress_path = progress_file or Path(f".prewarm-{zoom}.progress")
    summary = prewarm_local(load_app(app), source, tiles, concurrency, progress_path)
    if summary.interrupted:
        console.print(f"interrupted; rerun the same command to resume ({progress_path})")
    console.print(
        f"done {summary.done}, skipped {summary.skipped}, failed {summary.failed} "
        f"(statuses {summary.statuses}), {summary.rate:.1f} tiles/s"
    )
    if summary.interrupted:
        raise typer.Exit(130)
    if summary.failed:
        raise typer.Exit(1)


def worker(
    queue: str = typer.Option(..., envvar="HNDSR_REDIS_URL", help="redis:// URL."),
    stream: str = typer.Option(DEFAULT_STREAM, help="Redis Stream of the queue."),
    batch: int = typer.Option(8, min=1, help="Jobs read (and run) at once."),
    claim_idle_ms: int = typer.Option(60_000, help="Reclaim entries idle this long."),
    max_deliveries: int = typer.Option(3, min=1, help="Deliveries before dead-lettering."),
    exit_when_drained: bool = typer.Option(False, help="Stop when nothing is left."),
    name: str | None = typer.Option(None, help="Consumer name (default: host-random)."),
    app: str = typer.Option(..., help="App factory (module:callable) that computes the tiles."),
    metrics_port: int | None = typer.Option(
        None, help="Serve Prometheus metrics on this port (e.g. 9100)."
    ),
) -> None:
    """Process pre-warm jobs from the Redis Stream through the in-process app."""
    if metrics_port is not None:
        prometheus_client.start_http_server(metrics_port)
        register_gpu_metrics()

    async def main() -> None:
        async with AsyncExitStack() as stack:
            http = await app_client(load_app(app), stack)
            client = worker_client(queue)
            stack.push_async_callback(client.aclose)
            runner = Worker(client, http, stream, batch, claim_idle_ms, max_deliveries, name)
            stats = await runner.run(exit_when_drained)
            console.print(
                f"worker {runner.name}: done {stats.done}, retried {stats.retried}, "
                f"reclaimed {stats.reclaimed}, dead-lettered {stats.dead}"
            )

    asyncio.run(main())


def register(cli: typer.Typer, app_factory: str, settings: Callable[[], Any]) -> None:
    """Add ``cache purge``, ``prewarm`` and ``worker`` to ``cli``; tiles run through
    ``app_factory`` (``module:callable``) unless ``--app`` names another; ``purge`` defaults
    to the ``cache_dir`` and ``redis_url`` of ``settings()`` (read when it runs)."""
    cache_cli = typer.Typer(help="Tile cache maintenance.", no_args_is_help=True)
    purge_defaults = {
        "cache_dir": lambda: settings().cache_dir,
        "redis_url": lambda: settings().redis_url,
    }
    cache_cli.command("purge", context_settings={"default_map": purge_defaults})(purge)
    cli.add_typer(cache_cli, name="cache")
    defaults = {"default_map": {"app": app_factory}}
    cli.command("prewarm", context_settings=defaults)(prewarm)
    cli.command("worker", context_settings=defaults)(worker)
