"""The pipeline's side of data transfer: call the translate package, write D_trans and the lexicon.

Kept apart from `stages` so the pipeline depends on the translate package in exactly one place. The
embeddings → lexicon → translation chain runs inside `translate_corpus`; its word-type embeddings are
cached by the translate package under the pipeline cache (`<cache>/embeddings/type-embeddings`), keyed
by encoder and corpus, so the source side is computed once and shared by every target language.
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
    from unitrans.translate.word_translation import TranslateConfig, resolve_casing

    casing = resolve_casing(config.casing, source, target_text)
    return TranslateConfig(encoder=config.encoder, layers=config.translate_layers, casing=casing)


def settings(
    config: PipelineConfig, source: Sequence[Sentence], target_text: Sequence[Sentence]
) -> dict[str, Any]:
    """What decides the translation (for the stage key)."""
    return {"translate": translate_config(config, source, target_text).to_dict()}


def run_translation(
    source: Sequence[Sentence],
    target_text: Sequence[Sentence],
    config: PipelineConfig,
    *,
    out_file: Path,
    lexicon_file: Path,
    cache_dir: Path,
    progress: bool = True,
) -> dict[str, Any]:
    """Translate the labelled source sentences word by word; write D_trans (CoNLL) and the lexicon (TSV)."""
    from unitrans.translate.lexicon import write_lexicon
    from unitrans.translate.word_translation import translate_corpus

    result = translate_corpus(
        list(source),
        list(target_text),
        translate_config(config, source, target_text),
        cache_dir=cache_dir,
        progress=progress,
    )
    write_conll(out_file, result.sentences)
    write_lexicon(lexicon_file, result.lexicon)
    return {"lexicon_size": len(result.lexicon), **dict(result.stats)}
