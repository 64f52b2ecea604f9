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


def _is_valid(tags) -> bool:
    prev = "O"
    for tag in tags:
        if tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
            return False
        prev = tag
    return True


def test_padding_and_batch_order_do_not_matter():
    rng = np.random.default_rng(1)
    lengths = [7, 1, 0, 12, 3]
    T, L = 15, len(CONLL_LABELS)
    lp = torch.from_numpy(np.log(rng.dirichlet(np.ones(L), size=(len(lengths), T))).astype(np.float32))
    garbage = lp.clone()
    for b, n in enumerate(lengths):
        garbage[b, n:] = torch.randn(T - n, L) * 100  # padding must be ignored
    batched = constrained_viterbi(garbage, torch.tensor(lengths), CONLL_LABELS)
    for b, n in enumerate(lengths):
        alone = constrained_viterbi(lp[b : b + 1, :n], torch.tensor([n]), CONLL_LABELS)[0]
        assert batched[b] == alone and len(alone) == n


def test_decode_tags_outputs_valid_iob2_one_tag_per_word():
    rng = np.random.default_rng(2)
    probs = [rng.dirichlet(np.ones(9) * 0.2, size=n).astype(np.float32) for n in rng.integers(0, 30, 200)]
    tags = decode_tags(probs, CONLL_LABELS, batch_size=16)
    assert [len(t) for t in tags] == [len(p) for p in probs]
    assert all(_is_valid(t) for t in tags)
    # Unconstrained argmax already valid -> Viterbi keeps it (no transition scores are learnt).
    for p, t in zip(probs, tags, strict=True):
        argmax = [CONLL_LABELS[i] for i in p.argmax(axis=1)]
        if _is_valid(argmax):
            assert t == argmax


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="expected log_probs of shape"):
        constrained_viterbi(torch.zeros(1, 3, 4), torch.tensor([3]), CONLL_LABELS)
    with pytest.raises(ValueError, match="lengths within"):
        constrained_viterbi(torch.zeros(1, 3, 9), torch.tensor([4]), CONLL_LABELS)
    with pytest.raises(ValueError, match="expected IOB2 labels"):
        constrained_viterbi(torch.zeros(1, 3, 2), torch.tensor([3]), ["O", "E-PER"])


def test_zero_and_nan_probabilities_still_give_valid_iob2():
    lp = torch.full((1, 4, 9), float("-inf"))
    lp[0, 0, CONLL_LABELS.index("I-PER")] = 0.0  # only an invalid start has mass
    lp[0, 3, CONLL_LABELS.index("I-ORG")] = float("nan")  # argmax would pick a NaN
    tags = [CONLL_LABELS[i] for i in constrained_viterbi(lp, torch.tensor([4]), CONLL_LABELS)[0]]
    assert _is_valid(tags) and len(tags) == 4
