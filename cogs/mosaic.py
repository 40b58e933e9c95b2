"""MosaicJSON documents: ``hndsr-tiles mosaic create`` writes one for a folder of COGs or a
list of URLs (cogeo-mosaic), and ``mosaic_footprints`` gives the area a mosaic covers."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import morecantile
import typer
from cogeo_mosaic.backends import MosaicBackend
from cogeo_mosaic.mosaic import MosaicJSON
from cogeo_mosaic.utils import get_dataset_info
from rasterio.errors import RasterioError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

RASTER_SUFFIXES = (".tif", ".tiff")
mosaic_app = typer.Typer(help="MosaicJSON documents of many COGs.", no_args_is_help=True)


def collect_sources(sources: Iterable[str]) -> list[str]:
    """COG URLs and absolute paths: a folder expands to the rasters under it (sorted)."""
    found: list[str] = []
    for source in sources:
        path = Path(source)
        if "://" in source:
            found.append(source)
        elif path.is_dir():
            rasters = (p for p in path.rglob("*") if p.suffix.lower() in RASTER_SUFFIXES)
            found += sorted(str(p.resolve()) for p in rasters)
        else:
            found.append(str(path.resolve()))
    return found


def create_mosaic(
    sources: list[str],
    tms: morecantile.TileMatrixSet,
    on_dataset: Callable[[str], None] = lambda source: None,
) -> MosaicJSON:
    """The MosaicJSON of ``sources``; its zoom range spans theirs (``ValueError`` if empty)."""
    if not sources:
        raise ValueError("no COGs given")
    features: list[dict[str, Any]] = []
    for source in sources:
        features.append(get_dataset_info(source, tms=tms))
        on_dataset(source)
    minzoom = min(f["properties"]["minzoom"] for f in features)
    maxzoom = max(f["properties"]["maxzoom"] for f in features)
    return MosaicJSON.from_features(features, minzoom, maxzoom, tilematrixset=tms, quiet=True)


def write_atomically(document: MosaicJSON, output: Path) -> None:
    """Write the document next to ``output``, then rename it into place."""
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(document.model_dump_json(exclude_none=True))
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def mosaic_footprints(url: str) -> list[dict[str, Any]]:
    """Lon/lat polygons of the mosaic's quadkey tiles that hold COGs (the area it covers)."""
    with MosaicBackend(url) as mosaic:
        tms = mosaic.mosaic_def.tilematrixset or morecantile.tms.get("WebMercatorQuad")
        polygons = []
        for quadkey in mosaic.mosaic_def.tiles:
            tile = morecantile.Tile(*_quadkey_tile(quadkey))
            w, s, e, n = tms.bounds(tile)
            ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
            polygons.append({"type": "Polygon", "coordinates": [ring]})
        return polygons


def _quadkey_tile(quadkey: str) -> tuple[int, int, int]:
    x = y = 0
    for digit in quadkey:
        x, y = x * 2 + (int(digit) & 1), y * 2 + (int(digit) >> 1)
    return x, y, len(quadkey)


@mosaic_app.command("create")
def create(
    output: Path = typer.Argument(..., help="MosaicJSON file to write (e.g. area.mosaic.json)."),
    sources: list[str] = typer.Argument(
        None, help="COG paths/URLs, or folders (every .tif under them)."
    ),
    url_list: Path | None = typer.Option(
        None, "--list", help="A file with one COG path/URL a line."
    ),
    tms: str = typer.Option("WebMercatorQuad", help="Tile matrix set of the mosaic."),
    overwrite: bool = typer.Option(False, help="Replace an existing output file."),
) -> None:
    """Write a MosaicJSON for a folder of COGs or a list of URLs."""
    console = Console(stderr=True, soft_wrap=True)
    listed = url_list.read_text().split() if url_list else []
    found = collect_sources([*(sources or []), *listed])
    if output.exists() and not overwrite:
        console.print(f"[red]error:[/red] {output} exists (use --overwrite)")
        raise typer.Exit(code=1)
    if tms not in morecantile.tms.list():
        console.print(f"[red]error:[/red] unknown tile matrix set {tms}")
        raise typer.Exit(code=1)
    columns = (TextColumn("[bold]mosaic"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("datasets", total=len(found))
            document = create_mosaic(
                found, morecantile.tms.get(tms), lambda _: progress.advance(task)
            )
        write_atomically(document, output)
    except (ValueError, OSError, RasterioError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(code=1) from None
    console.print(
        f"wrote {output}: {len(found)} COGs, zooms {document.minzoom}-{document.maxzoom}, "
        f"{len(document.tiles)} quadkeys at zoom {document.quadkey_zoom}"
    )
