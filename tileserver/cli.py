"""The ``hndsr-tiles`` command line (typer); subcommands are mounted from their packages."""

from __future__ import annotations

import typer
import uvicorn

from cache.cli import register as register_cache_commands
from cogs import mosaic_app, sample_data
from tileserver.settings import get_settings
from training.registry_cli import app as model_commands

app = typer.Typer(help="hndsr-tiles: a TiTiler tile server with on-demand super-resolution.")


@app.callback(no_args_is_help=True)
def main() -> None:
    """hndsr-tiles: a TiTiler tile server with on-demand super-resolution."""


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, help="Port to bind."),
    workers: int = typer.Option(1, min=1, help="Worker processes."),
) -> None:
    """Serve the tile server (configuration from HNDSR_* environment variables)."""
    uvicorn.run(
        "tileserver.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        timeout_graceful_shutdown=30,
    )


# Commands mounted from other packages; their folder defaults come from Settings (read
# when a command runs, so HNDSR_* applies).
sample_data_defaults = {"default_map": {"data_dir": lambda: get_settings().data_dir}}
app.command("sample-data", context_settings=sample_data_defaults)(sample_data)
app.add_typer(mosaic_app, name="mosaic")
register_cache_commands(app, "tileserver.app:create_app", get_settings)
app.add_typer(model_commands, name="model")
