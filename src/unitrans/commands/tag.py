"""CLI command: `unitrans tag --model DIR [FILES]` (raw text → one JSON object or CoNLL block per line)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from unitrans.commands import PREDICT_PROCESSES_HELP
from unitrans.pipeline.tagging import DEFAULT_BATCH_LINES, FORMATS, tag_files


def tag_command(
    model: Path = typer.Option(..., "--model", help="Checkpoint folder (or a stage folder with model/)."),
    files: list[Path] | None = typer.Argument(None, help="Text files (default: stdin), a segment per line."),
    fmt: str = typer.Option("json", "--format", help=f"Output: {' | '.join(FORMATS)}."),
    batch_lines: int = typer.Option(
        DEFAULT_BATCH_LINES, "--batch-lines", help="Input lines per pass of the model (memory stays flat)."
    ),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1 …; None = cuda if any."),
    processes: int = typer.Option(0, "--processes", help=PREDICT_PROCESSES_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No throughput line on stderr."),
) -> None:
    """Tag raw text; one output per input line, in order, empty lines included.

    json: {"line", "text", "entities": [{"text", "type", "start", "end", "score"}]} per line ("file" too
    with several files); start/end are code-point offsets within the line. conll: `word<TAB>tag` per
    word, a blank line after each input line. Then one line on stderr: lines, words, seconds, words/s.
    """
    from unitrans.model.predict import resolve_processes
    from unitrans.model.runtime import pick_device

    parts = resolve_processes(processes, pick_device(device))
    try:
        stats = tag_files(model, files or [], lambda text: typer.echo(text, nl=False), fmt=fmt,
                          batch_lines=batch_lines, device=device, processes=parts)  # fmt: skip
    except BrokenPipeError:  # the reader left (`| head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        raise typer.Exit(141) from None  # 128 + SIGPIPE, what a shell reports for such a writer
    if not quiet:
        typer.echo(stats.summary(), err=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("tag")(tag_command)
