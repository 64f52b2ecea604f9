"""CLI command: `unitrans run` (the whole UniTrans pipeline)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand

from unitrans.pipeline.config import PRESETS
from unitrans.pipeline.variants import VARIANTS

MULTI_VALUE_OPTIONS = ("--target", "-t", "--variants", "--export")


def expand_multi_values(args: list[str], options: tuple[str, ...] = MULTI_VALUE_OPTIONS) -> list[str]:
    """Let `--target es nl de` mean `--target es --target nl --target de` (`es,nl,de` works too).

    Values follow a list option until the next token that starts with `-`.
    """
    out: list[str] = []
    current: str | None = None

    def add(name: str, values: str) -> None:
        for value in (v.strip() for v in values.split(",")):
            if value:
                out.extend((name, value))

    for arg in args:
        if arg == "--":
            current = None
            out.append(arg)
        elif arg.startswith("-") and len(arg) > 1:
            name, eq, value = arg.partition("=")
            current = name if name in options else None
            if current is None:
                out.append(arg)
            elif eq:
                add(current, value)
        elif current is not None:
            add(current, arg)
        else:
            out.append(arg)
    return out


class MultiValueCommand(TyperCommand):
    """A command whose list options take several space-separated values after one flag."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_multi_values(list(args)))


def run_command(
    target: list[str] = typer.Option(..., "--target", "-t", help="Target language(s): es nl de no ..."),
    source: str = typer.Option("en", "--source", help="Source language with labelled data."),
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        help="Folder with <lang>/train.txt and test.txt (default ../shared/data/conll "
        "or $UNITRANS_DATA_DIR).",
    ),
    encoder: str | None = typer.Option(None, "--encoder", help="Encoder name or folder (me5-small)."),
    variants: list[str] | None = typer.Option(
        None, "--variants", help=f"Variants to run (preset's by default): {' '.join(VARIANTS)}."
    ),
    export: list[str] | None = typer.Option(
        None,
        "--export",
        help="Variants whose models go to <out>/models/<lang>[-variant]/ with a model card "
        "(default: unitrans when it runs, else the last variant).",
    ),
    seeds: int | None = typer.Option(None, "--seeds", help="Runs per variant; reports mean ± std."),
    seed: int | None = typer.Option(None, "--seed", help="First seed (42)."),
    ensemble: int | None = typer.Option(None, "--ensemble", help="M teacher runs averaged (Eq. 14)."),
    eta: float | None = typer.Option(None, "--eta", help="Weight of the hard loss η (1)."),
    rounds: int | None = typer.Option(
        None,
        "--rounds",
        help="Self-training rounds (1): the student of each round joins the teachers of the next; "
        "every round is reported, the last one under the variant's own name.",
    ),
    preset: str = typer.Option("paper", "--preset", help=f"Settings preset: {' | '.join(PRESETS)}."),
    out: Path | None = typer.Option(None, "--out", help="Run folder (runs/unitrans)."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Stage cache (<out>/cache)."),
    dictionary: Path | None = typer.Option(
        None,
        "--dictionary",
        help="Bilingual dictionary (MUSE: `source target` per line) seeding and overriding the word "
        "translation; results are labelled dictionary-assisted, not zero-resource.",
    ),
    settings: list[str] | None = typer.Option(
        None, "--set", help="Any other setting as NAME=VALUE, e.g. --set epochs=1 --set max_length=64."
    ),
    no_progress: bool = typer.Option(
        False, "--no-progress", help="No per-step progress bars (they show only in a terminal anyway)."
    ),
    plan: bool = typer.Option(
        False,
        "--plan",
        help="Print the stages (cached or to run) with estimated times and exit; runs and writes nothing.",
    ),
) -> None:
    """Run UniTrans end to end (translation, teachers, voting, students, evaluation) with a stage cache."""
    from unitrans.pipeline.config import make_config
    from unitrans.pipeline.runner import plan_run, run_pipeline, summary_lines
    from unitrans.pipeline.settings import parse_settings

    explicit = {
        "targets": tuple(target),
        "source": source,
        "data_dir": data_dir,
        "encoder": encoder,
        "variants": tuple(variants) if variants else None,
        "export": tuple(export) if export else None,
        "seeds": seeds,
        "seed": seed,
        "ensemble": ensemble,
        "eta": eta,
        "rounds": rounds,
        "out_dir": out,
        "cache_dir": cache_dir,
        "dictionary": dictionary,
    }
    values = {**parse_settings(settings or []), **{k: v for k, v in explicit.items() if v is not None}}
    config = make_config(preset, **values)
    if plan:
        for line in plan_run(config):
            typer.echo(line)
        return
    # Per-step bars only in a terminal: in a log file their carriage returns become thousands of lines.
    result = run_pipeline(config, progress=not no_progress and sys.stderr.isatty())
    for rec in result.records:
        status = "cached, skipped" if rec.cached else f"ran in {rec.seconds:.1f}s"
        typer.echo(f"[{status}] {rec.label}", err=True)
    for line in summary_lines(result):
        typer.echo(line, err=True)
    typer.echo(result.markdown)
    typer.echo(
        f"report: {result.paths['md']} (also {result.paths['json'].name}, {result.paths['png'].name})",
        err=True,
    )
    for lang, by_variant in result.exports.items():
        for variant, folder in by_variant.items():
            typer.echo(f"model ({lang}, {variant}): {folder}  (unitrans tag --model {folder} FILE)", err=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("run", cls=MultiValueCommand)(run_command)
