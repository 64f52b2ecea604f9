"""Neighbour denoising (unitrans.train.denoise) against direct transcriptions on hand-written points."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unitrans.train.denoise import (
    agrees,
    blend,
    consistency_weights,
    denoise_targets,
    entity_types,
    knn_indices,
    neighbour_majority,
)
from unitrans.train.distill import NO_HARD_LABEL
from unitrans.train.supervised import cross_entropy_loss, weighted_cross_entropy

LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")

# Six points in 2-d, by angle (cosine only sees the direction): 0°, 10°, 20° | 90°, 100° | 180°.
# Point 3 is at 90° and point 1/2 are nearer 0°; distances in degrees make the order obvious.
ANGLES = [0.0, 10.0, 20.0, 90.0, 100.0, 180.0]
POINTS = np.array([[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in ANGLES])
POINTS[2] *= 3.0  # length must not matter


def brute_force_knn(h: np.ndarray, k: int) -> np.ndarray:
    """Direct transcription: sort all other rows by (−cosine, index), take k (cosines to 2^-20 steps)."""
    out = []
    for i in range(len(h)):
        cos = [
            (-round(float(h[i] @ h[j] / (np.linalg.norm(h[i]) * np.linalg.norm(h[j]))) * 2**20), j)
            for j in range(len(h))
            if j != i
        ]
        out.append([j for _, j in sorted(cos)[:k]])
    return np.asarray(out, dtype=np.int64)


def test_knn_on_six_points_excludes_self():
    nn = knn_indices(POINTS, 2)
    # by hand: 0° → 10°, 20°; 10° → 0° and 20° tie at 10°: lower index first; 20° → 10°, 0°;
    # 90° → 100°, then 20° (70°); 100° → 90°, then 20° (80°); 180° → 100° (80°), 90° (90°)
    assert nn.tolist() == [[1, 2], [0, 2], [1, 0], [4, 2], [3, 2], [4, 3]]
    assert all(i not in row for i, row in enumerate(nn))


def test_knn_ties_go_to_the_lower_index():
    h = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0], [0.0, 1.0], [-1.0, 0.0]])
    # rows 1, 2, 3 point the same way: for row 0 all three tie at cosine 0
    assert knn_indices(h, 2)[0].tolist() == [1, 2]
    assert knn_indices(h, 2)[3].tolist() == [1, 2]  # itself excluded, duplicates kept in index order


@pytest.mark.parametrize("chunk", [1, 7, 64, None])
def test_chunked_knn_equals_brute_force(chunk):
    rng = np.random.default_rng(3)
    h = rng.normal(size=(60, 5))
    h[10] = h[20]  # an exact duplicate: a tie that must resolve the same way in every chunk
    expected = brute_force_knn(h, 6)
    assert np.array_equal(knn_indices(h, 6, chunk=chunk), expected)


def test_knn_k_larger_than_the_corpus_and_tiny_inputs():
    assert knn_indices(POINTS, 100).shape == (6, 5)
    assert knn_indices(POINTS[:1], 5).shape == (1, 0)
    assert knn_indices(np.zeros((0, 3)), 5).shape == (0, 0)


def test_blend_is_the_formula():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(len(LABELS)), size=6)
    nn = knn_indices(POINTS, 2)
    beta = 0.3
    expected = np.array([(1 - beta) * p[i] + beta * (p[nn[i][0]] + p[nn[i][1]]) / 2 for i in range(6)])
    got = blend(p, nn, beta)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(blend(p, nn, 0.0), p, rtol=1e-6)


def test_types_and_majority():
    types = entity_types(LABELS)
    assert types.tolist() == [0, 1, 1, 2, 2]  # B-PER and I-PER one type
    labels = np.array([1, 2, 1, 3, 4, 0])  # B-PER I-PER B-PER B-LOC I-LOC O
    nn = np.array([[1, 2], [0, 2], [0, 1], [4, 5], [3, 5], [3, 4]])
    # row 0: I-PER and B-PER are both PER; row 3: I-LOC and O tie → the lower type id (O = 0);
    # row 5: B-LOC, I-LOC → LOC
    assert neighbour_majority(labels, nn, types).tolist() == [1, 1, 1, 0, 0, 2]
    assert agrees(labels, nn, types).tolist() == [True, True, True, False, False, False]


def test_denoise_targets_filters_votes_and_blends():
    # one PER cluster (0, 1, 2) and one O cluster (3, 4, 5); word 2's teacher says O, word 5's says PER
    onehot = np.eye(len(LABELS), dtype=np.float32)
    soft = [np.stack([onehot[1], onehot[2], onehot[0]]), np.stack([onehot[0], onehot[0], onehot[3]])]
    hard = [np.array([1, 2, 0]), np.array([0, NO_HARD_LABEL, 3])]
    nn = np.array([[1, 2], [0, 2], [0, 1], [4, 5], [3, 5], [3, 4]])
    blended, filtered, rate = denoise_targets(soft, hard, nn, LABELS, beta=0.5)
    # majorities (type): 0: {PER, O} tie → O; 1: {PER, O} → O; 2: {PER, PER} → PER; 3: {O, LOC} → O;
    # 4: {O, LOC} → O; 5: {O, O} → O.
    assert [h.tolist() for h in filtered] == [
        [NO_HARD_LABEL, NO_HARD_LABEL, NO_HARD_LABEL],
        [0, NO_HARD_LABEL, NO_HARD_LABEL],
    ]
    assert rate == pytest.approx(2 / 6)  # words 3 and 4 agree
    flat = np.concatenate(soft)
    expected = 0.5 * flat + 0.5 * flat[nn].mean(axis=1)
    np.testing.assert_allclose(np.concatenate(blended), expected, rtol=1e-6)
    assert [len(b) for b in blended] == [3, 3]
    _, none, _ = denoise_targets(soft, None, nn, LABELS)
    assert none is None


def test_consistency_weights_transcribe_colada():
    """CoLaDa (ts_trainer.load_knn): count of same-type neighbours, / class max, sigmoid around μ·mean."""
    labels = np.array([1, 2, 1, 0, 0, 0, 3, 0])
    rng = np.random.default_rng(1)
    nn = np.stack([rng.choice([j for j in range(8) if j != i], size=3, replace=False) for i in range(8)])
    types = entity_types(LABELS)
    count = np.array([sum(types[labels[j]] == types[labels[i]] for j in nn[i]) for i in range(8)], float)
    expected = np.zeros(8)
    for c in set(labels.tolist()):
        members = [i for i in range(8) if labels[i] == c]
        top = max(count[i] for i in members)
        score = {i: (count[i] / top if top else 0.0) for i in members}
        mean = sum(score.values()) / len(members)
        w = {i: 1 / (1 + math.exp(-6.0 * (score[i] - 1.0 * mean))) for i in members}
        for i in members:
            expected[i] = w[i] / max(w.values())
    got = consistency_weights(labels, nn, LABELS)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got.max() == pytest.approx(1.0) and got.min() > 0


def test_weighted_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(5, len(LABELS))
    hard = torch.tensor([0, 1, -100, 3, 2])
    ones = torch.ones(5)
    assert torch.allclose(weighted_cross_entropy(logits, hard, ones), cross_entropy_loss(logits, hard, None))
    w = torch.tensor([1.0, 0.5, 9.0, 0.0, 2.0])
    logp = torch.log_softmax(logits, dim=-1)
    expected = -(1.0 * logp[0, 0] + 0.5 * logp[1, 1] + 0.0 * logp[3, 3] + 2.0 * logp[4, 2]) / 4
    assert torch.allclose(weighted_cross_entropy(logits, hard, w), expected)
    none = torch.full((5,), -100)
    assert float(weighted_cross_entropy(logits, none, w)) == 0.0
