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
_FLOOR = -1e30


def _penalties(labels: Sequence[str], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    start, trans = allowed_transitions(labels)
    if not start.any():
        raise ValueError(f"no label can start a sentence under IOB2: {list(labels)}")
    start_pen = torch.where(torch.from_numpy(start), 0.0, _FORBIDDEN).to(dtype)
    trans_pen = torch.where(torch.from_numpy(trans), 0.0, _FORBIDDEN).to(dtype)
    return start_pen, trans_pen


def _best_previous(score: torch.Tensor, trans_pen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """max/argmax over the previous label of score[b, prev] + trans[prev, next].

    A running maximum over the L previous labels keeps every op at (k, L) elements: a single
    (k, L, L) reduction crosses torch's parallel-grain size and, on a loaded 2-core machine, thread
    hand-offs made it 5-20x slower than this loop.
    """
    best = score[:, 0:1] + trans_pen[0]
    arg = torch.zeros_like(best, dtype=torch.long)
    for prev in range(1, trans_pen.shape[0]):
        cand = score[:, prev : prev + 1] + trans_pen[prev]
        better = cand > best
        best = torch.where(better, cand, best)
        arg = torch.where(better, prev, arg)
    return best, arg


def constrained_viterbi(
    log_probs: torch.Tensor, lengths: torch.Tensor, labels: Sequence[str]
) -> list[list[int]]:
    """Best valid-IOB2 label ids per sentence.

    log_probs: (B, T, L) per-word log-probabilities (padding beyond each length is ignored);
    lengths: (B,) sentence lengths; labels: the L label strings in column order.
    """
    if log_probs.dim() != 3 or log_probs.shape[-1] != len(labels):
        raise ValueError(f"expected log_probs of shape (B, T, {len(labels)}), got {tuple(log_probs.shape)}")
    batch, steps, _ = log_probs.shape
    lengths = lengths.to(torch.long).cpu()
    if lengths.shape != (batch,) or (lengths < 0).any() or (lengths > steps).any():
        raise ValueError(f"expected {batch} lengths within 0..{steps}, got {lengths.tolist()}")
    if batch == 0 or steps == 0:
        return [[] for _ in range(batch)]
    # Longest sentences first: at step t only the first `active[t]` rows are still running, so each
    # step works on a prefix slice and the total work is the number of words, not B * T.
    order = torch.argsort(lengths, descending=True, stable=True)
    sorted_lengths = lengths[order].tolist()
    ends = np.bincount(np.asarray(sorted_lengths, dtype=np.int64), minlength=steps + 1)
    active = (batch - np.cumsum(ends))[:steps].tolist()  # active[t] = rows with length > t
    # A finite floor keeps every valid path finite, so a forbidden (-inf) step can never tie with it:
    # the output is valid IOB2 even for zero probabilities or NaNs.
    emissions = log_probs.detach().to("cpu", torch.float32)
    emissions = torch.nan_to_num(emissions, nan=_FLOOR, neginf=_FLOOR).clamp(min=_FLOOR)
    if sorted_lengths != lengths.tolist():
        emissions = emissions[order]
    start_pen, trans_pen = _penalties(labels, emissions.dtype)

    score = emissions[:, 0] + start_pen  # (B, L); rows stop changing once their sentence ends
    backptrs: list[torch.Tensor] = [torch.empty(0)]  # backptrs[t]: (active[t], L)
    for t in range(1, steps):
        k = active[t]
        if k == 0:
            break
        best, arg = _best_previous(score[:k], trans_pen)
        score[:k] = best + emissions[:k, t]
        backptrs.append(arg)

    current = score.argmax(dim=1)  # the label at each row's last word
    path = torch.zeros((steps, batch), dtype=torch.long)
    for t in range(len(backptrs) - 1, 0, -1):
        k = active[t]
        path[t, :k] = current[:k]
        current[:k] = backptrs[t].gather(1, current[:k].unsqueeze(1)).squeeze(1)
    path[0] = current
    ids = path.T.tolist()
    out: list[list[int]] = [[] for _ in range(batch)]
    for row, (i, n) in enumerate(zip(order.tolist(), sorted_lengths, strict=True)):
        out[i] = ids[row][:n]
    return out


def decode_tags(
    probs: Sequence[np.ndarray], labels: Sequence[str], *, batch_size: int = 4096
) -> list[list[str]]:
    """Per-sentence (n_i, L) probability matrices -> valid IOB2 tag strings, one per word.

    Sentences are sorted by length and decoded in batches so padding stays small.
    """
    out: list[list[str] | None] = [None] * len(probs)
    order = sorted(range(len(probs)), key=lambda i: -len(probs[i]))
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
