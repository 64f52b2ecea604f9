"""Per-word training targets: hard label ids (from tags or given) and optional soft distributions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from unitrans.data import Sentence
from unitrans.errors import UnitransError


def _where(sentence: Sentence, k: int) -> str:
    return f"sentence {k + 1}" + (f" (line {sentence.line})" if sentence.line else "")


def word_targets(
    train: Sequence[Sentence],
    labels: Sequence[str],
    hard_labels: Sequence[np.ndarray] | None,
    soft_targets: Sequence[np.ndarray] | None,
) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Validate and normalise targets: hard ids int64 (n_words,), -100 = none; soft float32 (n_words, L)."""
    index = {label: i for i, label in enumerate(labels)}
    for name, given in (("hard_labels", hard_labels), ("soft_targets", soft_targets)):
        if given is not None and len(given) != len(train):
            raise UnitransError(f"{name} has {len(given)} entries for {len(train)} sentences")
    hard: list[np.ndarray] = []
    for k, sentence in enumerate(train):
        if hard_labels is not None:
            ids = np.asarray(hard_labels[k], dtype=np.int64).reshape(-1)
            if len(ids) != len(sentence):
                raise UnitransError(
                    f"hard_labels for {_where(sentence, k)}: {len(ids)} ids, {len(sentence)} words"
                )
            bad = (ids != -100) & ((ids < 0) | (ids >= len(labels)))
            if bad.any():
                raise UnitransError(f"hard_labels for {_where(sentence, k)}: id {ids[bad][0]} out of range")
        elif sentence.tags is not None:
            unknown = [t for t in sentence.tags if t not in index]
            if unknown:
                raise UnitransError(f"{_where(sentence, k)}: tag {unknown[0]!r} is not one of {list(labels)}")
            ids = np.fromiter((index[t] for t in sentence.tags), dtype=np.int64, count=len(sentence))
        elif soft_targets is not None:
            ids = np.full(len(sentence), -100, dtype=np.int64)
        else:
            raise UnitransError(
                f"{_where(sentence, k)} has no tags, and no hard_labels/soft_targets were given"
            )
        hard.append(ids)
    if soft_targets is None:
        return hard, None
    soft: list[np.ndarray] = []
    for k, sentence in enumerate(train):
        probs = np.asarray(soft_targets[k], dtype=np.float32)
        if probs.shape != (len(sentence), len(labels)):
            raise UnitransError(
                f"soft_targets for {_where(sentence, k)}: shape {probs.shape}, "
                f"expected ({len(sentence)}, {len(labels)})"
            )
        soft.append(probs)
    return hard, soft
