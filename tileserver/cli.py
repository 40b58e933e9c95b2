"""The ``hndsr-tiles`` command line (typer); subcommands are mounted from their packages."""

from __future__ import annotations

import typer

from cogs.cli import sample_data

app = typer.Typer(help="hndsr-tiles: a TiTiler tile server with on-demand super-resolution.")


@app.callback(no_args_is_help=True)
def main() -> None:
    """hndsr-tiles: a TiTiler tile server with on-demand super-resolution."""


app.command("sample-data")(sample_data)
