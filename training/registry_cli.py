"""``hndsr-tiles model list|show|register|promote|rollback`` (mounted by ``tileserver.cli``).

MLflow is imported only when a command runs (``training.registry``), so mounting these
commands costs the server's CLI nothing. The store is ``MLFLOW_TRACKING_URI``
(default ``sqlite:///mlflow.db``).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="The HNDSR model registry (MLflow): versions, aliases, promotion gate.")
console = Console(soft_wrap=True)


@app.command("list")
def list_command() -> None:
    """Registered versions of ``hndsr`` with their aliases and gate verdicts."""
    from training import registry

    client = registry.registry_client()
    by_version: dict[str, list[str]] = {}
    for alias, version in registry.aliases(client).items():
        by_version.setdefault(version, []).append(alias)
    table = Table("version", "semver", "model version", "aliases", "ship gates", "tile eval")
    for v in registry.list_versions(client):
        table.add_row(
            str(v.version),
            v.tags.get("semver", ""),
            v.tags.get("model_version", ""),
            ",".join(sorted(by_version.get(str(v.version), []))),
            v.tags.get("uc_merced.ship_gates_passed", ""),
            v.tags.get("tile_eval.fast_psnr_mean", v.tags.get("tile_eval", "")),
        )
    console.print(table)


@app.command()
def show(ref: str = typer.Argument("champion", help="Version number or alias.")) -> None:
    """One version: tags, source, and the recorded alias changes."""
    from training import registry

    client = registry.registry_client()
    try:
        version = registry.get_version(client, ref)
    except registry.RegistryError as exc:
        raise typer.BadParameter(str(exc), param_hint="REF") from exc
    console.print(f"[bold]{registry.MODEL_NAME} version {version.version}[/] ({version.source})")
    console.print_json(json.dumps(dict(sorted(version.tags.items()))))
    events = [e for e in registry.alias_log(client) if e["version"] == str(version.version)]
    for event in events:
        console.print(
            f"{event['at']} {event['alias']} {event['action']} by {event['by']}: {event['reason']}"
        )


@app.command()
def register(
    export_dir: Path = typer.Argument(
        Path("artifacts/export"), exists=True, file_okay=False, help="Output of training.export."
    ),
    eval_json: Path | None = typer.Option(
        None, "--eval", exists=True, dir_okay=False, help="UC Merced eval.json (default: card's)."
    ),
    eval_tiles: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="Tile-path eval_tiles.json of these weights."
    ),
    reason: str = typer.Option("registered", help="Why (recorded with the challenger alias)."),
) -> None:
    """Register an exported checkpoint as a new version and alias it ``challenger``."""
    from training import registry

    try:
        version = registry.register(
            export_dir, eval_json=eval_json, eval_tiles=eval_tiles, reason=reason
        )
    except registry.RegistryError as exc:
        console.print(f"[red]not registered:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print(
        f"registered {registry.MODEL_NAME} version {version.version} "
        f"({version.tags['semver']}, {version.tags['model_version']}) as challenger"
    )


@app.command()
def promote(
    ref: str = typer.Argument("challenger", help="Version number or alias to promote."),
    margin: float = typer.Option(
        0.0, help="dB of mean tile-path fast PSNR by which the candidate must beat the champion."
    ),
    reason: str = typer.Option(..., help="Why (recorded with the alias change)."),
) -> None:
    """Run the promotion gate; move ``champion`` only if every row passes (exit 1 otherwise)."""
    from training import registry

    try:
        result = registry.promote(ref, margin=margin, reason=reason)
    except registry.RegistryError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    table = Table("gate", "value", "threshold", "result", "note", title=f"version {result.version}")
    for row in result.gate:
        verdict = "[green]PASS[/]" if row.passed else "[red]FAIL[/]"
        table.add_row(row.name, f"{row.value:.3f}", f"{row.threshold:.3f}", verdict, row.note)
    console.print(table)
    if not result.promoted:
        console.print(f"[red]refused:[/] champion stays at version {result.previous}")
        raise typer.Exit(1)
    console.print(f"champion: version {result.previous} -> {result.version}")


@app.command()
def rollback(reason: str = typer.Option(..., help="Why (recorded with the alias change).")) -> None:
    """Point ``champion`` back at the previous champion (no gate: it already passed one)."""
    from training import registry

    try:
        version = registry.rollback(reason=reason)
    except registry.RegistryError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    console.print(f"champion rolled back to version {version}")
