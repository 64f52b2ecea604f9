"""CLI commands: `unitrans translate`, `unitrans lexicon induce/eval/from-freedict`.

`--dictionary` (translate, induce) makes the result dictionary-assisted; `lexicon eval` has no such option
on purpose: P@k of a map seeded by a dictionary would measure the dictionary (issue 15).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from unitrans.errors import UnitransError

lexicon_app = typer.Typer(help="Induce and evaluate bilingual lexicons (CSLS).", no_args_is_help=True)

ENCODER = typer.Option("me5-small", "--encoder", help="Encoder deriving word vectors (name or folder).")
OTHER_ENCODERS = typer.Option(
    [],
    "--other-encoder",
    help="A further encoder (repeatable) whose word vectors compete with --encoder's; the label-free "
    "criterion picks the encoder and layer.",
)
SRC_EMB = typer.Option(None, "--src-emb", help="Source fastText/word2vec .vec file (with --tgt-emb).")
TGT_EMB = typer.Option(None, "--tgt-emb", help="Target fastText/word2vec .vec file (with --src-emb).")
MAX_VOCAB = typer.Option(200_000, "--max-vocab", help="Most frequent words kept per side.")
LAYERS = typer.Option(None, "--layers", help="Candidate encoder layers, e.g. '6,8,10' (default: auto).")
MAX_OCC = typer.Option(30, "--max-occurrences", help="Occurrences averaged per word type.")
CASED = typer.Option(False, "--cased", help="Embed case-sensitive types instead of lowercased ones.")
NORMALIZE = typer.Option("center,renorm", "--normalize", help="'', center, renorm or center,renorm.")
ROUNDS = typer.Option(3, "--refinement-rounds", help="Procrustes refinements after the first solve.")
CRITERION = typer.Option("mutual", "--criterion", help="Map/layer selection: mutual or mean_cosine.")
BORROWING = typer.Option(
    10.0,
    "--borrowing-ratio",
    help="Drop target words this many times more frequent in the source text (0: keep all).",
)
CACHE = typer.Option(None, "--cache-dir", help="Cache root (default: $UNITRANS_CACHE or ~/.cache/unitrans).")
DICTIONARY = typer.Option(
    None,
    "--dictionary",
    help="Bilingual dictionary (MUSE: `source target` per line, first target wins) that seeds the map and "
    "overrides the induced translations of its words: dictionary-assisted, not zero-resource.",
)


def _config(
    encoder, src_emb, tgt_emb, max_vocab, layers, max_occurrences, cased, normalize, rounds, **policies
):
    from unitrans.translate.word_translation import TranslateConfig

    try:
        layer_tuple = tuple(int(x) for x in layers.split(",")) if layers else None
    except ValueError:
        raise UnitransError(f"--layers expects comma-separated integers, got {layers!r}") from None
    if policies.get("borrowing_ratio") == 0:
        policies["borrowing_ratio"] = None
    return TranslateConfig(
        encoder=encoder,
        src_emb=None if src_emb is None else str(src_emb),
        tgt_emb=None if tgt_emb is None else str(tgt_emb),
        max_vocab=max_vocab,
        layers=layer_tuple,
        max_occurrences=max_occurrences,
        lowercase=not cased,
        normalize=normalize,
        refinement_rounds=rounds,
        **policies,
    )


def _dictionary(path: Path | None, config):
    from unitrans.translate.dictionary import read_user_dictionary

    return None if path is None else read_user_dictionary(path, lowercase=config.lowercase)


def _write_json(path: Path, data: dict) -> None:
    """JSON beside the output, atomically, with the umask's mode."""
    from unitrans.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def translate(
    source: Path = typer.Option(..., "--source", help="Labelled source CoNLL file."),
    target_text: Path = typer.Option(..., "--target-text", help="Unlabelled target text (CoNLL or tokens)."),
    out: Path = typer.Option(..., "--out", help="Translated CoNLL file (labels copied)."),
    lexicon_out: Path | None = typer.Option(None, "--lexicon-out", help="Induced lexicon TSV."),
    casing: str = typer.Option(
        "target",
        "--casing",
        help="target: the word's usual casing in the target text (German nouns), upper-cased where the "
        "source is; source: copy the source token's casing pattern; lexicon: as induced; auto: target "
        "when the target text capitalises more words than the source text, else source.",
    ),
    keep_person_names: bool = typer.Option(
        True, "--keep-person-names/--translate-person-names", help="Copy PER tokens untranslated."
    ),
    min_csls: float | None = typer.Option(None, "--min-csls", help="Copy tokens whose CSLS is lower."),
    dictionary: Path | None = DICTIONARY,
    contextual: bool = typer.Option(
        False,
        "--contextual/--no-contextual",
        help="Each token picks, among its word's best CSLS candidates, the one that fits its sentence.",
    ),
    contextual_k: int = typer.Option(5, "--contextual-k", help="Candidates per word for --contextual."),
    encoder: str = ENCODER,
    other_encoder: list[str] = OTHER_ENCODERS,
    src_emb: Path | None = SRC_EMB,
    tgt_emb: Path | None = TGT_EMB,
    max_vocab: int = MAX_VOCAB,
    layers: str | None = LAYERS,
    max_occurrences: int = MAX_OCC,
    cased: bool = CASED,
    normalize: str = NORMALIZE,
    refinement_rounds: int = ROUNDS,
    criterion: str = CRITERION,
    borrowing_ratio: float = BORROWING,
    cache_dir: Path | None = CACHE,
) -> None:
    """Translate labelled source data word by word into the target language (D_trans)."""
    from unitrans.data import read_conll, read_unlabelled, write_conll
    from unitrans.translate.lexicon import write_lexicon
    from unitrans.translate.word_translation import translate_corpus

    config = _config(
        encoder,
        src_emb,
        tgt_emb,
        max_vocab,
        layers,
        max_occurrences,
        cased,
        normalize,
        refinement_rounds,
        criterion=criterion,
        borrowing_ratio=borrowing_ratio,
        other_encoders=tuple(other_encoder),
        casing=casing,
        keep_person_names=keep_person_names,
        min_csls=min_csls,
        contextual=contextual,
        contextual_k=contextual_k,
    )
    user_dict = _dictionary(dictionary, config)
    result = translate_corpus(
        read_conll(source), read_unlabelled(target_text), config, cache_dir=cache_dir, dictionary=user_dict
    )
    write_conll(out, result.sentences)
    if lexicon_out is not None:
        write_lexicon(lexicon_out, result.lexicon)
    sidecar = {"config": config.to_dict(), "stats": result.stats}
    if user_dict is not None:
        sidecar["dictionary"] = {"path": str(user_dict.path), "sha256": user_dict.sha256}
    _write_json(out.with_name(out.name + ".json"), sidecar)
    s = result.stats
    typer.echo(
        f"{out}: {s['sentences']} sentences, {s['tokens']} tokens, {s.get('translated', 0)} translated "
        f"(layer {s['layer']}, criterion {s['criterion']})"
    )


@lexicon_app.command("induce")
def induce(
    source_text: Path = typer.Option(..., "--source-text", help="Source text (CoNLL or tokens)."),
    target_text: Path = typer.Option(..., "--target-text", help="Target text (CoNLL or tokens)."),
    out: Path = typer.Option(..., "--out", help="Lexicon TSV: source, target, CSLS score."),
    dictionary: Path | None = DICTIONARY,
    encoder: str = ENCODER,
    other_encoder: list[str] = OTHER_ENCODERS,
    src_emb: Path | None = SRC_EMB,
    tgt_emb: Path | None = TGT_EMB,
    max_vocab: int = MAX_VOCAB,
    layers: str | None = LAYERS,
    max_occurrences: int = MAX_OCC,
    cased: bool = CASED,
    normalize: str = NORMALIZE,
    refinement_rounds: int = ROUNDS,
    criterion: str = CRITERION,
    borrowing_ratio: float = BORROWING,
    cache_dir: Path | None = CACHE,
) -> None:
    """Translate every source word to its CSLS nearest target word (or its dictionary translation)."""
    from unitrans.data import read_unlabelled
    from unitrans.translate.dictionary import override_lexicon
    from unitrans.translate.lexicon import induce_lexicon, write_lexicon
    from unitrans.translate.word_translation import build_alignment

    config = _config(
        encoder,
        src_emb,
        tgt_emb,
        max_vocab,
        layers,
        max_occurrences,
        cased,
        normalize,
        refinement_rounds,
        criterion=criterion,
        borrowing_ratio=borrowing_ratio,
        other_encoders=tuple(other_encoder),
    )
    user_dict = _dictionary(dictionary, config)
    alignment, _ = build_alignment(
        read_unlabelled(source_text),
        read_unlabelled(target_text),
        config,
        cache_dir=cache_dir,
        dictionary=user_dict,
    )
    lexicon = induce_lexicon(alignment, k=config.csls_k, progress=True)
    if user_dict is not None:
        lexicon = override_lexicon(lexicon, user_dict)
    write_lexicon(out, lexicon)
    assisted = (
        f", dictionary-assisted: {len(lexicon.from_dictionary)} from the dictionary" if user_dict else ""
    )
    typer.echo(
        f"{out}: {len(lexicon)} source words (layer {alignment.layer}, criterion {alignment.criterion:.4f}"
        f"{assisted})"
    )


@lexicon_app.command("eval")
def evaluate(
    source_text: Path = typer.Option(..., "--source-text", help="Source text (CoNLL or tokens)."),
    target_text: Path = typer.Option(..., "--target-text", help="Target text (CoNLL or tokens)."),
    dictionary: Path = typer.Option(..., "--dict", help="Bilingual dictionary, `source target` per line."),
    max_source_rank: int | None = typer.Option(
        None, "--max-source-rank", help="Score only source words among the N most frequent."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    encoder: str = ENCODER,
    other_encoder: list[str] = OTHER_ENCODERS,
    src_emb: Path | None = SRC_EMB,
    tgt_emb: Path | None = TGT_EMB,
    max_vocab: int = MAX_VOCAB,
    layers: str | None = LAYERS,
    max_occurrences: int = MAX_OCC,
    cased: bool = CASED,
    normalize: str = NORMALIZE,
    refinement_rounds: int = ROUNDS,
    criterion: str = CRITERION,
    borrowing_ratio: float = BORROWING,
    cache_dir: Path | None = CACHE,
) -> None:
    """Precision@1/5/10 (NN and CSLS) against a dictionary, MUSE's protocol. For measurement only (of the
    zero-resource map: there is no --dictionary here)."""
    from unitrans.data import read_unlabelled
    from unitrans.translate.lexicon import evaluate_lexicon, read_dictionary
    from unitrans.translate.word_translation import choose_encoder

    config = _config(
        encoder,
        src_emb,
        tgt_emb,
        max_vocab,
        layers,
        max_occurrences,
        cased,
        normalize,
        refinement_rounds,
        criterion=criterion,
        borrowing_ratio=borrowing_ratio,
        other_encoders=tuple(other_encoder),
    )
    gold = read_dictionary(dictionary, lowercase=config.lowercase)
    choice = choose_encoder(
        read_unlabelled(source_text), read_unlabelled(target_text), config, cache_dir=cache_dir
    )
    alignment, chosen = choice.alignment, choice.config.encoder
    scores = evaluate_lexicon(alignment, gold, csls_k=config.csls_k, max_source_rank=max_source_rank)
    if as_json:
        where = {"encoder": chosen, "layer": alignment.layer, "criterion": alignment.criterion}
        typer.echo(json.dumps({**scores.to_dict(), **where}))
        return
    typer.echo(f"{scores.sources} source words, {scores.pairs} pairs; {chosen}, layer {alignment.layer}")
    for method in ("nn", "csls"):
        values = getattr(scores, method)
        typer.echo(f"{method:5s} " + "  ".join(f"{k}={v:.3f}" for k, v in values.items()))


@lexicon_app.command("from-freedict")
def from_freedict(
    package: str = typer.Argument(
        ..., help="Installed FreeDict package, e.g. eng-spa (dict-freedict-eng-spa)."
    ),
    out: Path = typer.Option(..., "--out", help="MUSE dictionary to write (`source target` per line)."),
    dictd_dir: Path = typer.Option(Path("/usr/share/dictd"), "--dictd-dir", help="Where dictd files live."),
) -> None:
    """Convert an installed Debian FreeDict dictionary into MUSE pairs for --dictionary."""
    from unitrans.translate.freedict import package_files, read_freedict, write_pairs

    pairs = read_freedict(*package_files(package, dictd_dir))
    if not pairs:
        raise UnitransError(f"{package}: no single-word entries found")
    lines = write_pairs(out, pairs)
    typer.echo(f"{out}: {len(pairs)} source words, {lines} pairs")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("translate")(translate)
    app.add_typer(lexicon_app, name="lexicon")
