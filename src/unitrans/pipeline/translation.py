"""The pipeline's side of data transfer: call the translate package, write D_trans and the lexicon.

Kept apart from `stages` so the pipeline depends on the translate package in exactly one place. The
embeddings → lexicon → translation chain runs inside `translate_corpus`; its word-type embeddings are
cached by the translate package under the pipeline cache (`<cache>/embeddings/type-embeddings`), keyed
by encoder and corpus, so the source side is computed once and shared by every target language.

A user's dictionary (`--dictionary`) enters the stage's key as the SHA-256 of its bytes (never its path:
a moved file reuses the cache, an edited one does not); without one the key is what it always was.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unitrans.data import Sentence, write_conll
from unitrans.pipeline.config import PipelineConfig


def translate_config(
    config: PipelineConfig, source: Sequence[Sentence], target_text: Sequence[Sentence]
) -> Any:
    """The translate package's settings for this run: its defaults, with the run's encoder, and the
    casing resolved (so `auto` and the casing it picks share one cache key)."""
    from unitrans.translate.casing import resolve_casing
    from unitrans.translate.word_translation import TranslateConfig

    casing = resolve_casing(config.casing, source, target_text)
    return TranslateConfig(
        encoder=config.encoder,
        other_encoders=tuple(e for e in config.translate_encoders if e != config.encoder),
        layers=config.translate_layers,
        casing=casing,
        contextual=config.contextual_translation,
    )


def user_dictionary(config: PipelineConfig) -> Any:
    """The run's dictionary, parsed (None without one); a malformed file fails here, in a second."""
    from unitrans.translate.dictionary import read_user_dictionary
    from unitrans.translate.word_translation import TranslateConfig

    if config.dictionary is None:
        return None
    return read_user_dictionary(config.dictionary, lowercase=TranslateConfig().lowercase)


def report_setting(dictionary: Any) -> dict[str, str] | None:
    """How the report names the run's setting: None for zero-resource, else dictionary-assisted."""
    from unitrans.translate.dictionary import SETTING

    if dictionary is None:
        return None
    return {"name": SETTING, "dictionary": str(dictionary.path), "sha256": dictionary.sha256}


FROM_CONFIG: Any = object()
"""Default of `dictionary` below: read `config.dictionary`. The stage reads it once and passes the same
parse to both, so the key's SHA-256 is that of the pairs the translation used."""


def settings(
    config: PipelineConfig,
    source: Sequence[Sentence],
    target_text: Sequence[Sentence],
    *,
    dictionary: Any = FROM_CONFIG,
) -> dict[str, Any]:
    """What decides the translation (for the stage key)."""
    out: dict[str, Any] = {"translate": translate_config(config, source, target_text).to_dict()}
    if dictionary is FROM_CONFIG:
        dictionary = user_dictionary(config)
    if dictionary is not None:
        out["dictionary_sha256"] = dictionary.sha256
    return out


def run_translation(
    source: Sequence[Sentence],
    target_text: Sequence[Sentence],
    config: PipelineConfig,
    *,
    out_file: Path,
    lexicon_file: Path,
    cache_dir: Path,
    progress: bool = True,
    dictionary: Any = FROM_CONFIG,
) -> dict[str, Any]:
    """Translate the labelled source sentences word by word; write D_trans (CoNLL) and the lexicon (TSV).

    The candidate layers are aligned side by side, one process per share of this machine's cores that
    a stage gets (two on 2 cores with one thread a stage): the numbers do not depend on it."""
    import torch

    from unitrans.pipeline.parallel import available_cores
    from unitrans.translate.lexicon import write_lexicon
    from unitrans.translate.word_translation import translate_corpus

    if dictionary is FROM_CONFIG:
        dictionary = user_dictionary(config)

    result = translate_corpus(
        list(source),
        list(target_text),
        translate_config(config, source, target_text),
        cache_dir=cache_dir,
        progress=progress,
        dictionary=dictionary,
        processes=max(1, available_cores() // torch.get_num_threads()),
    )
    write_conll(out_file, result.sentences)
    write_lexicon(lexicon_file, result.lexicon)
    return {"lexicon_size": len(result.lexicon), **dict(result.stats)}
