"""CLI commands: `unitrans train` (fine-tune a tagger) and `unitrans predict` (tag a file)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from unitrans.commands import PREDICT_PROCESSES_HELP
from unitrans.train.config import TrainConfig

_DEFAULTS = TrainConfig()


def _help(name: str) -> str:
    return TrainConfig.__dataclass_fields__[name].metadata["help"]


def train(
    train_file: Path = typer.Option(..., "--train", help="Labelled CoNLL file (word ... TAG)."),
    out: Path = typer.Option(..., "--out", help="Checkpoint folder to write (resumes if interrupted)."),
    encoder: str = typer.Option(_DEFAULTS.encoder, "--encoder", help=_help("encoder")),
    epochs: int = typer.Option(_DEFAULTS.epochs, "--epochs", help=_help("epochs")),
    lr: float = typer.Option(_DEFAULTS.lr, "--lr", help=_help("lr")),
    batch_size: int = typer.Option(_DEFAULTS.batch_size, "--batch-size", help=_help("batch_size")),
    seed: int = typer.Option(_DEFAULTS.seed, "--seed", help=_help("seed")),
    freeze_layers: int | None = typer.Option(
        None,
        "--freeze-layers",
        help="Bottom encoder layers frozen (embeddings always frozen); default: the encoder's (3, the "
        "paper's; EmbeddingGemma-300M 12).",
    ),
    max_length: int = typer.Option(_DEFAULTS.max_length, "--max-length", help=_help("max_length")),
    bf16: bool | None = typer.Option(
        None, "--bf16/--no-bf16", help="Force bf16 autocast on/off (default auto)."
    ),
    loss_weighting: str = typer.Option(
        _DEFAULTS.loss_weighting, "--loss-weighting", help=_help("loss_weighting")
    ),
    batch_by: str = typer.Option(_DEFAULTS.batch_by, "--batch-by", help=_help("batch_by")),
    average_last: float = typer.Option(_DEFAULTS.average_last, "--average-last", help=_help("average_last")),
    processes: int = typer.Option(_DEFAULTS.processes, "--processes", help=_help("processes")),
    merge_init: float = typer.Option(_DEFAULTS.merge_init, "--merge-init", help=_help("merge_init")),
    device: str | None = typer.Option(None, "--device", help=_help("device")),
    init: Path | None = typer.Option(
        None,
        "--init",
        help="Continue from this checkpoint (fresh optimizer and warm-up), e.g. Θsrc → Θteach.",
    ),
    compact: bool = typer.Option(
        False,
        "--compact",
        help="Save only what training changed (needs the base encoder folder to load; ~7x smaller).",
    ),
) -> None:
    """Fine-tune a tagger on a labelled file (the paper's recipe by default)."""
    from unitrans.atomic import check_writable_dir
    from unitrans.data import read_conll
    from unitrans.model.encoders import default_frozen_layers
    from unitrans.model.runtime import pick_device
    from unitrans.train import supervised

    # Checked before the data is read or a model loads: a wrong --device or --out fails in a second.
    pick_device(device)
    check_writable_dir(out, "output folder (--out)")
    config = TrainConfig(
        encoder=encoder,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        freeze_layers=default_frozen_layers(encoder) if freeze_layers is None else freeze_layers,
        max_length=max_length,
        bf16=bf16,
        device=device,
        loss_weighting=loss_weighting,
        batch_by=batch_by,
        average_last=average_last,
        processes=processes,
        merge_init=merge_init,
    )
    sentences = read_conll(train_file)
    folder = supervised.train_tagger(sentences, out, config, init=init, compact=compact)
    timings = json.loads((folder / "unitrans.json").read_text(encoding="utf-8"))["timings"]
    typer.echo(
        f"{folder}  ({timings['total_seconds']:.0f} s, {timings['train_tokens_per_second']:.0f} tok/s)"
    )


def predict(
    model: Path = typer.Option(..., "--model", help="Checkpoint folder written by `unitrans train`."),
    input_file: Path = typer.Option(
        ..., "--input", help="Labelled or unlabelled file (CoNLL, tokens, text)."
    ),
    out: Path = typer.Option(..., "--out", help="CoNLL output: word and predicted tag per line."),
    probs: Path | None = typer.Option(None, "--probs", help="Also save per-word probabilities (.npz)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Windows per inference batch."),
    processes: int = typer.Option(0, "--processes", help=PREDICT_PROCESSES_HELP),
    device: str | None = typer.Option(None, "--device", help=_help("device")),
) -> None:
    """Tag every word of a file (constrained Viterbi over the model's probabilities)."""
    from unitrans.atomic import check_writable_file
    from unitrans.data import read_unlabelled, write_conll
    from unitrans.model import predict as prediction
    from unitrans.model.runtime import pick_device
    from unitrans.model.tagger import check_tagger_folder
    from unitrans.model.viterbi import decode_tags

    # Everything the user can get wrong is checked before the model loads or a word is tagged.
    prediction.check_batch_size(batch_size)
    parts = prediction.resolve_processes(processes, pick_device(device))
    check_tagger_folder(model)
    check_writable_file(out, "output file (--out)")
    if probs is not None:
        check_writable_file(probs, "probabilities file (--probs)")
    sentences = read_unlabelled(input_file)
    labels = prediction.model_labels(model)
    matrices = prediction.predict_probs(
        model, sentences, batch_size=batch_size, device=device, processes=parts
    )
    if probs is not None:
        prediction.save_probs(probs, matrices, labels)
    write_conll(out, sentences, decode_tags(matrices, labels))
    typer.echo(f"{out}  ({len(sentences)} sentences, {sum(len(s) for s in sentences)} words)")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("train")(train)
    app.command("predict")(predict)
