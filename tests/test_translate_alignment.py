import numpy as np
import pytest

from unitrans.errors import UnitransError
from unitrans.translate.alignment import (
    AlignConfig,
    align,
    drop_borrowings,
    identical_seed,
    mean_cosine_criterion,
    mutual_csls_dictionary,
    procrustes,
    select_and_align,
)
from unitrans.translate.embeddings import WordEmbeddings


def random_rotation(d: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def test_procrustes_recovers_a_known_rotation_exactly():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6))
    w_true = random_rotation(6, 1)
    y = x @ w_true.T  # target rows = W source rows
    w = procrustes(x, y)
    np.testing.assert_allclose(w, w_true, atol=1e-5)
    np.testing.assert_allclose(w @ w.T, np.eye(6), atol=1e-5)


def test_identical_seed_pairs_in_source_frequency_order():
    src = WordEmbeddings(("the", "Madrid", "city", "2019"), np.zeros((4, 2), np.float32))
    tgt = WordEmbeddings(("2019", "la", "Madrid", "ciudad"), np.zeros((4, 2), np.float32))
    np.testing.assert_array_equal(identical_seed(src, tgt), [[1, 2], [3, 0]])


def rotated_pair(n: int = 400, d: int = 20, shared: int = 12, noise: float = 0.05, seed: int = 0):
    """Target = rotated, noisy, shuffled copy of the source; only `shared` words keep their spelling."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x @ random_rotation(d, seed + 1).T + noise * rng.normal(size=(n, d))).astype(np.float32)
    perm = rng.permutation(n)
    src_words = tuple(f"s{i}" for i in range(n))
    tgt_words = [f"t{i}" for i in range(n)]
    for i in range(shared):
        tgt_words[i] = f"s{i}"
    tgt = WordEmbeddings(tuple(tgt_words[j] for j in perm), y[perm])
    gold = {i: int(np.nonzero(perm == i)[0][0]) for i in range(n)}  # source row -> target row
    return WordEmbeddings(src_words, x), tgt, gold


def test_refinement_recovers_the_full_dictionary():
    src, tgt, gold = rotated_pair()
    # 12 seed pairs under-determine a 20-d rotation, so the path to the full dictionary depends on the
    # SVD (numpy 2.4 reached 379 pairs after 2 rounds, earlier builds 400): give it rounds to converge.
    result = align(src, tgt, AlignConfig(normalize="", refinement_rounds=5))
    assert result.seed_pairs == 12
    pairs = mutual_csls_dictionary(result.mapped_source(), result.tgt.vectors)
    correct = sum(gold[i] == j for i, j in pairs)
    assert len(pairs) == correct == 400
    assert result.history[1][0] > result.history[0][0]  # refinement grew the dictionary beyond the seed
    assert result.criterion == max(rate for _, _, rate in result.history)
    assert result.criterion > 0.85


def test_criterion_prefers_the_right_map():
    src, tgt, _ = rotated_pair(seed=3)
    good = align(src, tgt, AlignConfig(normalize="", refinement_rounds=5))
    bad = mean_cosine_criterion(src.vectors @ random_rotation(20, 9).T, tgt.vectors)
    assert good.criterion > bad + 0.3


def test_select_and_align_picks_the_alignable_layer():
    src, tgt, _ = rotated_pair(seed=5)
    noise = np.random.default_rng(7).normal(size=tgt.vectors.shape).astype(np.float32)
    scrambled = WordEmbeddings(tgt.words, noise)  # a "layer" with no relation to the source
    chosen, scores = select_and_align({4: src, 8: src}, {4: scrambled, 8: tgt}, AlignConfig(normalize=""))
    assert chosen.layer == 8 and scores[8] > scores[4]


@pytest.mark.parametrize("processes", [2, 3])
def test_layers_aligned_side_by_side_give_the_loops_numbers(processes):
    """Forked processes per layer (the pipeline's translation) change nothing: same maps, same scores."""
    layers = {k: rotated_pair(seed=k, noise=0.05 * k) for k in (1, 2, 3)}
    src = {k: pair[0] for k, pair in layers.items()}
    tgt = {k: pair[1] for k, pair in layers.items()}
    one, one_scores = select_and_align(src, tgt, AlignConfig(normalize=""))
    many, many_scores = select_and_align(src, tgt, AlignConfig(normalize=""), processes=processes)
    assert list(many_scores) == [1, 2, 3] and many_scores == one_scores
    assert many.layer == one.layer and np.array_equal(many.W, one.W) and many.history == one.history


def test_borrowings_are_dropped_from_the_target():
    src = WordEmbeddings(("the", "madrid", "x"), np.eye(3, dtype=np.float32), np.array([1000, 10, 10]))
    tgt = WordEmbeddings(("de", "madrid", "the"), np.eye(3, dtype=np.float32), np.array([1000, 20, 2]))
    assert drop_borrowings(src, tgt, 10.0).words == ("de", "madrid")  # 'the': 0.98 vs 0.002 of the text
    assert drop_borrowings(src, tgt, 1000.0).words == tgt.words
    no_counts = WordEmbeddings(tgt.words, tgt.vectors)
    assert drop_borrowings(src, no_counts, 10.0).words == tgt.words


def test_too_few_identical_words_is_a_user_error():
    src = WordEmbeddings(("a", "b"), np.eye(2, dtype=np.float32))
    tgt = WordEmbeddings(("x", "y"), np.eye(2, dtype=np.float32))
    with pytest.raises(UnitransError, match="identical words"):
        align(src, tgt, AlignConfig())
    with pytest.raises(UnitransError):
        AlignConfig(normalize="whiten")
