"""Constrained Viterbi against brute-force enumeration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from unitrans.data.schemes import CONLL_LABELS, allowed_transitions
from unitrans.model.viterbi import constrained_viterbi, decode_tags


def _brute_force(lp: np.ndarray, labels) -> tuple[list[int], float]:
    start, trans = allowed_transitions(labels)
    n = lp.shape[0]
    seqs = np.array(list(itertools.product(range(len(labels)), repeat=n)))
    valid = start[seqs[:, 0]]
    for t in range(1, n):
        valid &= trans[seqs[:, t - 1], seqs[:, t]]
    scores = lp[np.arange(n), seqs].sum(axis=1)
    scores[~valid] = -np.inf
    best = int(scores.argmax())
    return seqs[best].tolist(), float(scores[best])


@pytest.mark.parametrize("labels", [CONLL_LABELS, ("O", "B-A", "I-A", "B-B", "I-B")])
def test_matches_brute_force_up_to_length_5(labels):
    rng = np.random.default_rng(0)
    lengths = [n for n in range(1, 6) for _ in range(6)]
    T, L = max(lengths), len(labels)
    lp = np.log(rng.dirichlet(np.ones(L) * 0.3, size=(len(lengths), T))).astype(np.float32)
    got = constrained_viterbi(torch.from_numpy(lp), torch.tensor(lengths), labels)
    for b, n in enumerate(lengths):
        want, _ = _brute_force(lp[b, :n].astype(np.float64), labels)
        assert got[b] == want, (n, got[b], want)


def test_decode_tags_never_starts_with_inside():
    probs = [np.array([[0.0] * 4 + [1.0] + [0.0] * 4]), np.zeros((0, 9))]  # all mass on I-LOC
    tags = decode_tags(probs, CONLL_LABELS)
    assert tags[0] != ["I-LOC"] and tags[1] == []
