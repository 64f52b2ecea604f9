"""CLI commands: `unitrans data check` and `unitrans data stats FILE...`."""

from __future__ import annotations

from pathlib import Path

import typer

from unitrans.data.registry import (
    DATA_DIR_ENV,
    check_benchmarks,
    default_data_dir,
    format_stats_table,
    split_stats,
)

data_app = typer.Typer(help="Inspect and check NER data files.", no_args_is_help=True)


@data_app.command("check")
def check(
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        help=f"Folder with <lang>/{{train,dev,test}}.txt (default: ${DATA_DIR_ENV} or ../shared/data/conll).",
    ),
) -> None:
    """Count sentences, tokens and entities of the five benchmark sets; exit 1 on any mismatch."""
    root = data_dir if data_dir is not None else default_data_dir()
    rows = check_benchmarks(root)
    present = [r for r in rows if r.stats is not None]
    table = format_stats_table(
        [(f"{r.lang}/{r.split}", r.stats) for r in present if r.stats is not None],
        expected=[r.expected for r in present],
    )
    typer.echo(f"data: {root}")
    typer.echo(table)
    typer.echo(
        "blocks = blank-line blocks incl. -DOCSTART- blocks (the paper's Table 1 count); "
        "sentences = blocks without them; entities = B- tags."
    )
    problems = [(r, p) for r in rows for p in r.problems]
    for row, problem in problems:
        where = root / row.lang / f"{row.split}.txt"
        typer.echo(f"MISMATCH {row.lang}/{row.split} ({where}): {problem}", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"all {len(rows)} splits match the expected counts")


@data_app.command("stats")
def stats(
    files: list[Path] = typer.Argument(..., help="Labelled CoNLL column files."),
    tag_column: int = typer.Option(-1, "--tag-column", help="Column holding the tag (0-based, -1 = last)."),
    encoding: str | None = typer.Option(None, "--encoding", help="Text encoding (default: auto-detect)."),
    scheme: str = typer.Option("auto", "--scheme", help="Tag scheme: auto, IOB1, IOB2 (BIO), BIOES."),
) -> None:
    """Print sentences, tokens and entities per type for any labelled file."""
    rows = [(str(f), split_stats(f, tag_column=tag_column, encoding=encoding, scheme=scheme)) for f in files]
    typer.echo(format_stats_table(rows))
    for name, s in rows:
        typer.echo(f"{name}: {s.columns} columns, {s.scheme} tags (read as IOB2), {s.encoding}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.add_typer(data_app, name="data")
