"""Word-by-word translation of labelled source data (UniTrans data transfer, D_trans).

Each source token is replaced by its CSLS translation and keeps its label, so sentence lengths and the
IOB2 structure are unchanged. Tokens are copied instead of translated when they are numbers,
punctuation, outside the embedding vocabulary, (optionally) person names as in the authors' code, or
(optionally) when the CSLS score is below a threshold. Nothing is sampled: the result is a deterministic
function of the inputs and the config.

Two options beyond the paper: a user's bilingual dictionary (`translate.dictionary`: it seeds the map and
its words' translations override the induced ones; the result is "dictionary-assisted", not zero-resource)
and the contextual choice (`contextual`, off by default: each token picks among its word's best CSLS
candidates the one that fits its sentence; see `translate.contextual`).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from unitrans.data import Sentence
from unitrans.errors import UnitransError
from unitrans.train.config import check_finite
from unitrans.translate.alignment import AlignConfig, Alignment, select_and_align
from unitrans.translate.casing import (
    CASINGS,
    apply_casing,
    capitalised_share,
    resolve_casing,
    usual_forms,
)
from unitrans.translate.dictionary import SETTING, UserDictionary, override_lexicon
from unitrans.translate.embeddings import DEFAULT_MAX_VOCAB, WordEmbeddings, load_vec
from unitrans.translate.encoder_vectors import TypeVectorConfig, type_vectors
from unitrans.translate.lexicon import Lexicon, induce_lexicon

logger = logging.getLogger(__name__)
NUMBER = re.compile(r"^[+-]?(?=.*\d)[\d.,:/%'-]+$")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class TranslateConfig:
    """Embeddings, map and copy/casing policies of the word-by-word translation."""

    encoder: str = field(default="me5-small", metadata=_help("Encoder deriving the type embeddings."))
    other_encoders: tuple[str, ...] = field(
        default=(),
        metadata=_help(
            "Further encoders whose type embeddings compete with `encoder`'s: every candidate layer of "
            "each is aligned and the label-free criterion picks the encoder and layer (ties: `encoder`)."
        ),
    )
    src_emb: str | None = field(default=None, metadata=_help("Source .vec file instead of the encoder."))
    tgt_emb: str | None = field(default=None, metadata=_help("Target .vec file instead of the encoder."))
    max_vocab: int = field(default=DEFAULT_MAX_VOCAB, metadata=_help("Most frequent words kept per side."))
    layers: tuple[int, ...] | None = field(
        default=None, metadata=_help("Candidate encoder layers; the unsupervised criterion picks one.")
    )
    max_occurrences: int = field(default=30, metadata=_help("Occurrences averaged per word type."))
    lowercase: bool = field(default=True, metadata=_help("Embed lowercased types (casing restored later)."))
    normalize: str = field(default="center,renorm", metadata=_help("MUSE normalization before mapping."))
    refinement_rounds: int = field(default=3, metadata=_help("Procrustes refinements after the first."))
    dico_max_rank: int = field(default=10_000, metadata=_help("Refinement uses the N most frequent words."))
    csls_k: int = field(default=10, metadata=_help("Neighbourhood size K of CSLS."))
    criterion: str = field(default="mutual", metadata=_help("Map/layer selection: mutual or mean_cosine."))
    borrowing_ratio: float | None = field(
        default=10.0, metadata=_help("Drop target words this many times more frequent in the source text.")
    )
    copy_numbers: bool = field(default=True, metadata=_help("Copy tokens that are numbers."))
    copy_punctuation: bool = field(default=True, metadata=_help("Copy punctuation/symbol-only tokens."))
    keep_person_names: bool = field(default=True, metadata=_help("Copy tokens labelled PER (authors' code)."))
    min_csls: float | None = field(default=None, metadata=_help("Copy tokens whose CSLS score is lower."))
    casing: str = field(
        default="target",
        metadata=_help(
            "target: the word's usual casing in the target text (German nouns), upper-cased where the "
            "source is; source: transfer the source token's casing pattern; lexicon: as induced; auto: "
            "target when the target text capitalises more words than the source text, else source."
        ),
    )
    contextual: bool = field(
        default=False,
        metadata=_help(
            "Contextual choice: each token takes, among its word's contextual_k best CSLS candidates, the "
            "one closest (by CSLS) to its own contextual vector mapped by the map (encoder vectors only)."
        ),
    )
    contextual_k: int = field(default=5, metadata=_help("Candidates per word for the contextual choice."))

    def __post_init__(self) -> None:
        check_finite(self)
        if self.casing not in CASINGS:
            raise UnitransError(f"casing must be one of {CASINGS}, got {self.casing!r}")
        if (self.src_emb is None) != (self.tgt_emb is None):
            raise UnitransError("give both --src-emb and --tgt-emb, or neither (encoder-derived vectors)")
        if self.contextual and self.src_emb is not None:
            raise UnitransError(
                "the contextual choice needs encoder-derived vectors, not --src-emb/--tgt-emb"
            )
        if self.other_encoders and self.src_emb is not None:
            raise UnitransError(
                "other encoders compete with encoder-derived vectors, not --src-emb/--tgt-emb"
            )
        object.__setattr__(self, "other_encoders", tuple(dict.fromkeys(self.other_encoders)))
        if self.encoder in self.other_encoders:
            raise UnitransError(f"{self.encoder!r} is the encoder already; other_encoders lists the rest")
        if self.contextual_k < 1:
            raise UnitransError(f"contextual_k must be >= 1, got {self.contextual_k}")
        self.align_config()  # validates the map settings
        self.vector_config()

    def align_config(self) -> AlignConfig:
        return AlignConfig(
            normalize=self.normalize,
            refinement_rounds=self.refinement_rounds,
            dico_max_rank=self.dico_max_rank,
            csls_k=self.csls_k,
            criterion=self.criterion,
            borrowing_ratio=self.borrowing_ratio,
        )

    def vector_config(self) -> TypeVectorConfig:
        return TypeVectorConfig(
            encoder=self.encoder,
            layers=self.layers,
            max_occurrences=self.max_occurrences,
            lowercase=self.lowercase,
            max_vocab=self.max_vocab,
        )

    def to_dict(self) -> dict[str, object]:
        """The settings (a stage's cache key). The contextual settings appear only when the choice is on,
        so the keys of runs without it are those of the versions before it (their caches stay valid); the
        same holds for `other_encoders`."""
        data = asdict(self)
        if not self.other_encoders:
            del data["other_encoders"]
        if not self.contextual:
            del data["contextual"], data["contextual_k"]
        return data


@dataclass(frozen=True)
class TranslationResult:
    sentences: list[Sentence]
    lexicon: Lexicon
    stats: dict[str, object]


def word_vectors(
    source: Sequence[Sentence],
    target_text: Sequence[Sentence],
    config: TranslateConfig,
    *,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> tuple[dict[int, WordEmbeddings], dict[int, WordEmbeddings]]:
    """Per candidate layer (-1 for .vec files), the source and target word vectors."""
    if config.src_emb is not None and config.tgt_emb is not None:
        src = {-1: load_vec(config.src_emb, max_vocab=config.max_vocab)}
        tgt = {-1: load_vec(config.tgt_emb, max_vocab=config.max_vocab)}
    else:
        if not source or not target_text:
            raise UnitransError("empty source or target text: nothing to derive word vectors from")
        vc = config.vector_config()
        src = type_vectors(source, vc, cache_dir=cache_dir, progress=progress)
        tgt = type_vectors(target_text, vc, cache_dir=cache_dir, progress=progress)
    return src, tgt


def build_alignment(
    source: Sequence[Sentence],
    target_text: Sequence[Sentence],
    config: TranslateConfig,
    *,
    cache_dir: Path | None = None,
    progress: bool = True,
    dictionary: UserDictionary | None = None,
) -> tuple[Alignment, dict[int, float]]:
    """Embeddings for both sides (files or encoder) and the best map between them (unsupervised, or
    also seeded by a user's dictionary, read with the config's `lowercase`)."""
    seed = dictionary.pairs if dictionary is not None else ()
    choice = choose_encoder(source, target_text, config, cache_dir=cache_dir, progress=progress, seed=seed)
    return choice.alignment, choice.criteria[choice.config.encoder]


@dataclass(frozen=True)
class EncoderChoice:
    """The encoder whose word vectors align best: `config` names it as `encoder` (so the contextual choice
    reads the same encoder), with its alignment, its source vectors per layer, and every encoder's
    criterion per layer."""

    config: TranslateConfig
    alignment: Alignment
    src_layers: dict[int, WordEmbeddings]
    criteria: dict[str, dict[int, float]]


def choose_encoder(
    source: Sequence[Sentence],
    target_text: Sequence[Sentence],
    config: TranslateConfig,
    *,
    cache_dir: Path | None = None,
    progress: bool = True,
    seed: Sequence[tuple[str, str]] = (),
    processes: int = 1,
) -> EncoderChoice:
    """Align `config.encoder`'s layers and those of each of `config.other_encoders`; keep the best
    (alignment, layer) by the label-free criterion, the same one that picks a layer within an encoder
    (the mutual-neighbour rate is a share of the same word lists, so it compares across encoders too).
    Word vectors only: the tagger keeps the run's encoder."""
    criteria: dict[str, dict[int, float]] = {}
    choices = []
    for name in (config.encoder, *config.other_encoders):
        candidate = replace(config, encoder=name, other_encoders=())
        src, tgt = word_vectors(source, target_text, candidate, cache_dir=cache_dir, progress=progress)
        alignment, criteria[name] = select_and_align(
            src, tgt, candidate.align_config(), seed_words=seed, processes=processes
        )
        choices.append(EncoderChoice(candidate, alignment, src, criteria))
    best = max(choices, key=lambda c: c.alignment.criterion)  # the first of equals: `encoder`
    if config.other_encoders:
        chosen = best.config.encoder
        logger.info(
            "criterion per encoder %s -> %s",
            {c.config.encoder: round(c.alignment.criterion, 4) for c in choices},
            chosen,
        )
    return best


def is_punctuation(word: str) -> bool:
    return all(unicodedata.category(c)[0] in "PS" for c in word)


def translate_sentences(
    source: Sequence[Sentence],
    lexicon: Lexicon,
    config: TranslateConfig,
    usual: dict[str, str],
    choices: Sequence[Sequence[str | None]] | None = None,
) -> tuple[list[Sentence], Counter]:
    """Replace each token by its translation (or copy it, by policy); tags and lengths are kept.

    `choices` (per sentence and token, from the contextual choice) replace the lexicon's translation of
    a token, except for words a user's dictionary translates: the user's word is taken as given.
    """
    table = lexicon.as_dict()
    stats: Counter = Counter()
    out: list[Sentence] = []
    for si, sent in enumerate(source):
        tags = sent.tags or ("O",) * len(sent.words)
        words = []
        for wi, (word, tag) in enumerate(zip(sent.words, tags, strict=True)):
            key = word if word in table else word.lower()
            entry = table.get(key)
            if config.copy_numbers and NUMBER.match(word):
                reason = "copied_number"
            elif config.copy_punctuation and is_punctuation(word):
                reason = "copied_punctuation"
            elif config.keep_person_names and tag.endswith("-PER"):
                reason = "copied_person"
            elif entry is None:
                reason = "copied_oov"
            elif config.min_csls is not None and entry[1] < config.min_csls:  # NaN (dictionary): never
                reason = "copied_low_score"
            else:
                reason = "translated"
            stats[reason] += 1
            if reason != "translated":
                words.append(word)
                continue
            target = entry[0]
            if key in lexicon.from_dictionary:
                stats["translated_by_dictionary"] += 1
            elif choices is not None and choices[si][wi] is not None:
                stats["contextual_changed"] += choices[si][wi] != target
                target = choices[si][wi]
            translated = apply_casing(word, target, usual.get(target), config.casing)
            stats["translated_identical"] += translated == word
            words.append(translated)
        out.append(Sentence(tuple(words), sent.tags, sent.line))
    return out, stats


def translate_corpus(
    source: Sequence[Sentence],
    target_text: Sequence[Sentence],
    config: TranslateConfig,
    *,
    cache_dir: Path | None = None,
    progress: bool = True,
    dictionary: UserDictionary | None = None,
    processes: int = 1,
) -> TranslationResult:
    """D_trans: the labelled `source` translated word by word into the language of `target_text`.

    A user's `dictionary` (read with the config's `lowercase`) seeds the map and overrides the lexicon.
    `processes` > 1 aligns the candidate layers side by side (the same numbers, sooner).
    """
    casing = resolve_casing(config.casing, source, target_text)
    if casing != config.casing:
        config = replace(config, casing=casing)
    seed = dictionary.pairs if dictionary is not None else ()
    choice = choose_encoder(source, target_text, config, cache_dir=cache_dir, progress=progress, seed=seed,
                            processes=processes)  # fmt: skip
    config, alignment, src_layers = choice.config, choice.alignment, choice.src_layers
    criteria = choice.criteria[config.encoder]
    lexicon = induce_lexicon(alignment, k=config.csls_k, progress=progress)
    if dictionary is not None:
        lexicon = override_lexicon(lexicon, dictionary)
    choices = None
    if config.contextual:
        from unitrans.translate.contextual import contextual_choices

        choices = contextual_choices(
            source,
            alignment,
            src_layers[alignment.layer],
            config.vector_config(),
            normalize=config.normalize,
            k=config.contextual_k,
            csls_k=config.csls_k,
            progress=progress,
        )
    usual = usual_forms(target_text, config.lowercase) if config.casing == "target" else {}
    sentences, counts = translate_sentences(source, lexicon, config, usual, choices)
    tokens = sum(len(s) for s in source)
    stats: dict[str, object] = {
        "sentences": len(sentences),
        "tokens": tokens,
        **{k: int(v) for k, v in sorted(counts.items())},
        "source_vocab": len(alignment.src),
        "target_vocab": len(alignment.tgt),
        "seed_pairs": alignment.seed_pairs,
        "dropped_borrowings": alignment.dropped_borrowings,
        "layer": alignment.layer,
        "criterion": round(alignment.criterion, 5),
        "criterion_per_layer": {str(k): round(v, 5) for k, v in criteria.items()},
        "history": [list(h) for h in alignment.history],
        "casing": casing,
        "capitalised_source": round(capitalised_share(source), 4),
        "capitalised_target": round(capitalised_share(target_text), 4),
    }
    if dictionary is not None:
        stats.update(
            setting=SETTING,
            dictionary_sha256=dictionary.sha256,
            dictionary_pairs=len(dictionary.pairs),
            dictionary_seed_pairs=alignment.dictionary_pairs,
            dictionary_entries=len(lexicon.from_dictionary),
        )
    if len(choice.criteria) > 1:
        stats["encoder"] = config.encoder
        stats["criterion_per_encoder"] = {
            name: {str(k): round(v, 5) for k, v in per_layer.items()}
            for name, per_layer in choice.criteria.items()
        }
    if config.contextual:
        stats["contextual_k"] = config.contextual_k
    logger.info("translated %d of %d tokens (%s)", counts["translated"], tokens, dict(counts))
    return TranslationResult(sentences, lexicon, stats)
