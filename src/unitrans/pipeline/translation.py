"""The pipeline's side of data transfer: call the translate package, write D_trans and the lexicon.

Kept apart from `stages` so the pipeline depends on the translate package in exactly one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unitrans.data import Sentence, write_conll
from unitrans.pipeline.config import PipelineConfig


def settings(config: PipelineConfig) -> dict[str, Any]:
    """What decides the translation (for the stage key)."""
    return {"encoder": config.encoder, "source": config.source}


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
    from unitrans.translate import translate_corpus

    result = translate_corpus(list(source), list(target_text), config, cache_dir=cache_dir)
    write_conll(out_file, result.sentences)
    lexicon = getattr(result, "lexicon", {}) or {}
    lines = [f"{src}\t{tgt}" for src, tgt in sorted(dict(lexicon).items())]
    lexicon_file.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    pairs = zip(source, result.sentences, strict=True)
    changed = sum(a != b for s, t in pairs for a, b in zip(s.words, t.words, strict=True))
    total = sum(len(s) for s in source)
    return {
        "sentences": len(result.sentences),
        "lexicon_size": len(lexicon),
        "words_changed": changed / total if total else 0.0,
    }
