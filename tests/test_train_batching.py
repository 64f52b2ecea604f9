"""Training batches: each item once per epoch, a pure function of (seed, epoch), word budgets kept."""

from __future__ import annotations

import numpy as np
import pytest

from unitrans.train.batching import bucketed_batches


def _lengths(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    words = np.concatenate([rng.integers(1, 6, n // 3), rng.integers(10, 60, n - n // 3)])
    return words * 2 + rng.integers(0, 3, n), words


@pytest.mark.parametrize("by_words", [False, True])
def test_every_item_once_and_the_same_batches_for_the_same_seed(by_words):
    lengths, words = _lengths()
    kw = {"words": words} if by_words else {}
    a = bucketed_batches(lengths, 32, seed=7, epoch=0, **kw)
    assert sorted(np.concatenate(a).tolist()) == list(range(len(lengths)))
    b = bucketed_batches(lengths, 32, seed=7, epoch=0, **kw)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    c = bucketed_batches(lengths, 32, seed=7, epoch=1, **kw)
    assert len(a) != len(c) or not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_sentence_batches_hold_batch_size_items():
    lengths, _ = _lengths()
    sizes = [len(b) for b in bucketed_batches(lengths, 32, seed=1, epoch=0)]
    assert max(sizes) == 32 and sum(s == 32 for s in sizes) >= len(sizes) - 2


def test_word_batches_centre_on_the_budget_and_even_out_the_words_per_step():
    lengths, words = _lengths()
    budget = 32 * words.mean()
    by_words = bucketed_batches(lengths, 32, seed=1, epoch=0, words=words)
    by_sents = bucketed_batches(lengths, 32, seed=1, epoch=0)
    counts = np.array([words[b].sum() for b in by_words])
    # Every batch but the last of each pool lands within one item of the budget.
    ragged = np.abs(counts - budget) > words.max()
    assert ragged.sum() <= -(-len(lengths) // (32 * 50))
    assert len(by_words) == pytest.approx(len(by_sents), rel=0.1)
    spread = np.std(counts) / np.std([words[b].sum() for b in by_sents])
    assert spread < 0.2
    # Short sentences come many to a batch, long ones few.
    sizes = {len(b) for b in by_words}
    assert max(sizes) > 64 and min(sizes) < 24


def test_an_item_longer_than_the_budget_gets_a_batch_of_its_own():
    words = np.array([1] * 40 + [500])
    batches = bucketed_batches(words, 4, seed=0, epoch=0, words=words)
    alone = [b for b in batches if 40 in b]
    assert len(alone) == 1 and alone[0].tolist() == [40]
