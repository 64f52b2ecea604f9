"""CLI command: `unitrans evaluate --gold FILE --pred FILE [--mode conlleval|strict] [--json]`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from unitrans.eval.metrics import evaluate_files


def evaluate(
    pred: Path = typer.Option(
        ..., "--pred", help="Predictions: a CoNLL file whose last column is the predicted tag."
    ),
    gold: Path | None = typer.Option(
        None,
        "--gold",
        help="Gold CoNLL file (tag in the last column). Without it, --pred must be `word ... GOLD PRED`.",
    ),
    mode: str = typer.Option(
        "conlleval", "--mode", help="conlleval (chunk rules, as the paper) or strict (valid IOB2 only)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (fractions in [0, 1])."),
    encoding: str | None = typer.Option(None, "--encoding", help="Text encoding (default: auto-detect)."),
    scheme: str = typer.Option("auto", "--scheme", help="Tag scheme of both files: auto, IOB1, IOB2, BIOES."),
) -> None:
    """Entity-level micro precision, recall and F1, overall and per type."""
    scores = evaluate_files(gold, pred, mode=mode, encoding=encoding, scheme=scheme)
    if scores.pred_only_types:
        where = "the gold file" if gold is not None else "the gold column"
        typer.echo(
            f"unitrans: warning: types {', '.join(scores.pred_only_types)} occur only in the predictions, "
            f"not in {where}",
            err=True,
        )
    if as_json:
        typer.echo(json.dumps(scores.to_dict(), indent=2))
    else:
        typer.echo(scores.format_table())


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("evaluate")(evaluate)
