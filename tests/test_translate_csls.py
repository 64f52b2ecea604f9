import numpy as np
import pytest
import torch

from unitrans.translate.csls import cosine_neighbours, csls_neighbours


def direct_csls(src: np.ndarray, tgt: np.ndarray, k: int) -> np.ndarray:
    """Eqs. 3-5 written out: CSLS(x, y) = 2 cos(x, y) - r_T(x) - r_S(y)."""
    s = src / np.linalg.norm(src, axis=1, keepdims=True)
    t = tgt / np.linalg.norm(tgt, axis=1, keepdims=True)
    cos = s @ t.T
    r_t = np.array([np.mean(sorted(row)[-k:]) for row in cos])  # mean cos of x to its K nearest targets
    r_s = np.array([np.mean(sorted(col)[-k:]) for col in cos.T])  # mean cos of y to its K nearest sources
    return 2 * cos - r_t[:, None] - r_s[None, :]


@pytest.mark.parametrize(("n", "m", "d"), [(300, 420, 16), (257, 129, 8), (50, 700, 32)])
def test_csls_equals_direct_transcription(n, m, d):
    rng = np.random.default_rng(n)
    src, tgt = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    ref = direct_csls(src, tgt, 10)
    got = csls_neighbours(
        src, tgt, k=10, topn=3, block_size=64, candidates=4, dtype=torch.float32, dense_max_cells=0
    )
    np.testing.assert_array_equal(got.indices, np.argsort(-ref, axis=1)[:, :3])
    np.testing.assert_allclose(got.scores, -np.sort(-ref, axis=1)[:, :3], atol=1e-5)
    assert got.recomputed_rows > 0  # with only 4 candidates some rows need the exact fallback


def test_csls_bfloat16_is_close():
    rng = np.random.default_rng(1)
    src, tgt = rng.normal(size=(400, 64)), rng.normal(size=(500, 64))
    ref = direct_csls(src, tgt, 10)
    got = csls_neighbours(src, tgt, k=10, block_size=128, dtype=torch.bfloat16, dense_max_cells=0)
    assert (got.indices[:, 0] == ref.argmax(axis=1)).mean() > 0.95
    np.testing.assert_allclose(got.scores[:, 0], ref.max(axis=1), atol=0.02)


def test_queries_subset_uses_all_rows_for_r():
    rng = np.random.default_rng(2)
    src, tgt = rng.normal(size=(200, 16)), rng.normal(size=(150, 16))
    full = csls_neighbours(src, tgt, dtype=torch.float32)
    for cells in (0, 1 << 22):  # blocked and dense paths
        part = csls_neighbours(
            src, tgt, queries=40, dtype=torch.float32, block_size=32, dense_max_cells=cells
        )
        np.testing.assert_array_equal(part.indices, full.indices[:40])
        np.testing.assert_allclose(part.r_tgt, full.r_tgt, atol=1e-6)


def test_dense_path_equals_direct_transcription():
    rng = np.random.default_rng(4)
    src, tgt = rng.normal(size=(60, 8)), rng.normal(size=(90, 8))
    ref = direct_csls(src, tgt, 10)
    got = csls_neighbours(src, tgt, topn=2)
    np.testing.assert_array_equal(got.indices, np.argsort(-ref, axis=1)[:, :2])
    np.testing.assert_allclose(got.scores, -np.sort(-ref, axis=1)[:, :2], atol=1e-5)


def test_cosine_neighbours():
    rng = np.random.default_rng(3)
    src, tgt = rng.normal(size=(30, 8)), rng.normal(size=(40, 8))
    idx, cos = cosine_neighbours(src, tgt, topn=2, block_size=7)
    s = src / np.linalg.norm(src, axis=1, keepdims=True)
    t = tgt / np.linalg.norm(tgt, axis=1, keepdims=True)
    np.testing.assert_array_equal(idx, np.argsort(-(s @ t.T), axis=1)[:, :2])
    np.testing.assert_allclose(cos[:, 0], (s @ t.T).max(axis=1), atol=1e-5)
