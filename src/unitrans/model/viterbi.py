"""Viterbi decoding constrained to valid IOB2, with no learned transitions.

The paper decodes the student's per-word probabilities with Viterbi so that the output is always a
valid IOB2 sequence: transitions are 0 (allowed) or -inf (forbidden), taken from
`unitrans.data.schemes.allowed_transitions`, the same rules the strict metric uses. No library offers
this for arbitrary label sets over padded batches (torchcrf and friends learn transitions), so it is
written here: vectorised over the batch and the label pairs, looping only over time steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from unitrans.data.schemes import allowed_transitions

_FORBIDDEN = float("-inf")
# Probabilities are clamped before the log so that a zero never makes every path -inf.
_MIN_PROB = 1e-12


def _penalties(labels: Sequence[str], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    start, trans = allowed_transitions(labels)
    if not start.any():
        raise ValueError(f"no label can start a sentence under IOB2: {list(labels)}")
    start_pen = torch.where(torch.from_numpy(start), 0.0, _FORBIDDEN).to(dtype)
    trans_pen = torch.where(torch.from_numpy(trans), 0.0, _FORBIDDEN).to(dtype)
    return start_pen, trans_pen


def constrained_viterbi(
    log_probs: torch.Tensor, lengths: torch.Tensor, labels: Sequence[str]
) -> list[list[int]]:
    """Best valid-IOB2 label ids per sentence.

    log_probs: (B, T, L) per-word log-probabilities (padding beyond each length is ignored);
    lengths: (B,) sentence lengths; labels: the L label strings in column order.
    """
    if log_probs.dim() != 3 or log_probs.shape[-1] != len(labels):
        raise ValueError(f"expected log_probs of shape (B, T, {len(labels)}), got {tuple(log_probs.shape)}")
    batch, steps, n_labels = log_probs.shape
    lengths = lengths.to(torch.long).cpu()
    if lengths.shape != (batch,) or (lengths < 0).any() or (lengths > steps).any():
        raise ValueError(f"expected {batch} lengths within 0..{steps}, got {lengths.tolist()}")
    if batch == 0 or steps == 0:
        return [[] for _ in range(batch)]
    emissions = log_probs.detach().to("cpu", torch.float32)
    start_pen, trans_pen = _penalties(labels, emissions.dtype)

    score = emissions[:, 0] + start_pen  # (B, L)
    backptr = torch.empty((steps, batch, n_labels), dtype=torch.long)
    identity = torch.arange(n_labels).expand(batch, n_labels)
    backptr[0] = identity
    for t in range(1, steps):
        # cand[b, prev, next] = score[b, prev] + trans[prev, next]
        best, arg = (score.unsqueeze(2) + trans_pen).max(dim=1)
        active = (t < lengths).unsqueeze(1)  # finished sentences keep their score and point to themselves
        score = torch.where(active, best + emissions[:, t], score)
        backptr[t] = torch.where(active, arg, identity)

    path = torch.empty((steps, batch), dtype=torch.long)
    path[steps - 1] = score.argmax(dim=1)
    for t in range(steps - 1, 0, -1):
        path[t - 1] = backptr[t].gather(1, path[t].unsqueeze(1)).squeeze(1)
    ids = path.T.tolist()
    return [row[:n] for row, n in zip(ids, lengths.tolist(), strict=True)]


def decode_tags(
    probs: Sequence[np.ndarray], labels: Sequence[str], *, batch_size: int = 4096
) -> list[list[str]]:
    """Per-sentence (n_i, L) probability matrices -> valid IOB2 tag strings, one per word.

    Sentences are sorted by length and decoded in batches so padding stays small.
    """
    out: list[list[str] | None] = [None] * len(probs)
    order = sorted(range(len(probs)), key=lambda i: len(probs[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        longest = max(len(probs[i]) for i in chunk)
        padded = np.full((len(chunk), max(longest, 1), len(labels)), _MIN_PROB, dtype=np.float32)
        for row, i in enumerate(chunk):
            matrix = np.asarray(probs[i], dtype=np.float32)
            if matrix.ndim != 2 or matrix.shape[1] != len(labels):
                raise ValueError(f"sentence {i}: expected shape (n, {len(labels)}), got {matrix.shape}")
            padded[row, : len(matrix)] = matrix
        log_probs = torch.from_numpy(np.log(np.maximum(padded, _MIN_PROB)))
        lengths = torch.tensor([len(probs[i]) for i in chunk])
        for i, ids in zip(chunk, constrained_viterbi(log_probs, lengths, labels), strict=True):
            out[i] = [labels[j] for j in ids]
    return [tags if tags is not None else [] for tags in out]
