"""Pseudo-labels denoised by their nearest neighbours in a model's representation space, after CoLaDa
(Ma et al., ACL 2023, "CoLaDa: A Collaborative Label Denoising Framework for Cross-lingual NER"; code:
github.com/microsoft/vert-papers, papers/CoLaDa). Why: a word whose label differs from the labels of the
words that the model itself represents alike is more often mislabelled; neighbours need no target labels.

Two uses, each a named function tested against a direct transcription:

* D_T (the student's targets), `denoise_targets`: each word's soft label P_i (the soft teacher's
  probabilities) is blended with the mean over its k nearest other D_T words,
      P'_i = (1 − β)·P_i + β·(1/k) Σ_{j ∈ N_k(i)} P_j,
  and its hard label (the teachers' vote) is kept only where the neighbours' majority label agrees with
  it. Labels are compared at the level of entity types (B-X and I-X count as the same, O is its own
  type), as CoLaDa counts agreement (`trainers/ts_trainer.py`, `load_knn`: "change class knn to type
  level"); neighbours' labels are the argmax of their P; the majority is the most frequent type among the
  k, ties to the lower type id. The blend is ours (CoLaDa reweights the loss instead).
* D_trans (Θtrans/Θteach training data), `consistency_weights`: CoLaDa's exact instance-collaboration
  weight (`load_knn`): c_i = #{j ∈ N_K(i): type(y_j) = type(y_i)} / max over words of class y_i of that
  count; per class y, w_i = σ(α·(c_i − μ·mean_{y_j = y} c_j)), divided by the class's largest w. A
  translated word whose label disagrees with its neighbours gets a weight well below 1 in the loss.

Defaults, not tuned on target data: K = 500, α = 6 (`ealpha`), μ = 1 (`emu`) are CoLaDa's scripts
(`scripts/colada-step1.sh`, `colada-step2.sh`); CoLaDa has no β. We take β = 0.5, the equal mix CoLaDa
gives a word's own label and the other model's view of it in its first iteration (`trans_lam=0.5`,
`colada-step1.sh`: soft = λ·label + (1 − λ)·w·p). K = 500 was set for full CoNLL training sets; on a
subsample of a few thousand sentences a rare class has fewer than k members and its words' neighbourhoods
fill with O, so their hard labels are dropped more often (the agreement rate in the report shows it).

Representations (`unitrans.model.word_states`): as CoLaDa, the mean of the model's last three layers
(`knn_lid=3`), cosine similarity; the word's first subword (the state our tagger's head reads) where
CoLaDa averages subwords. kNN is exact (cosines within 1e-6 count as equal), in row chunks of bounded
memory, deterministic, self excluded and ties broken by the lower index (CoLaDa's faiss search also
drops exact duplicates; we keep them).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from unitrans.train.distill import NO_HARD_LABEL

DEFAULT_K = 500
"""CoLaDa's K (`--K 500` in scripts/colada-step1.sh and colada-step2.sh)."""
DEFAULT_BETA = 0.5
"""Weight of the neighbours' mean in the blend (CoLaDa's first-iteration `trans_lam` = 0.5, see above)."""
COLADA_ALPHA = 6.0
"""Slope of CoLaDa's sigmoid (`--ealpha 6`)."""
COLADA_MU = 1.0
"""Scale of the class mean subtracted before the sigmoid (`--emu 1`)."""
MEMORY_BUDGET = 64 * 2**20
"""Bytes of similarities held at once by `knn_indices` (rows per chunk = budget / (8·n): the float32
products, their int32 rounding and the candidate mask)."""


def knn_indices(
    states: np.ndarray, k: int, *, chunk: int | None = None, device: str | None = None
) -> np.ndarray:
    """(n, min(k, n−1)) int64: each row's k most cosine-similar other rows, most similar first.

    Exact; ties go to the lower index. Similarities (float32, on `device`: CUDA when there is one) are
    rounded to multiples of 2^-20 before ranking, so rounding noise of the matrix product (which can
    differ between chunk shapes) never reorders equal vectors: within 1e-6 is a tie. Rows are processed
    `chunk` at a time (default: what fits `MEMORY_BUDGET`), so memory is O(chunk·n), not O(n²).
    """
    h = np.asarray(states, dtype=np.float64)
    if h.ndim != 2:
        raise ValueError(f"expected an (n, d) matrix, got shape {h.shape}")
    n = h.shape[0]
    k = max(0, min(int(k), n - 1))
    out = np.zeros((n, k), dtype=np.int64)
    if k == 0:
        return out
    norms = np.linalg.norm(h, axis=1, keepdims=True)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    unit = torch.from_numpy((h / np.where(norms > 0, norms, 1.0)).astype(np.float32)).to(dev)
    rows = chunk or max(1, MEMORY_BUDGET // (8 * n))
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        q = torch.round((unit[start:stop] @ unit.T) * 2.0**20).to(torch.int32)
        q[torch.arange(stop - start), torch.arange(start, stop)] = torch.iinfo(torch.int32).min  # not self
        top = torch.topk(q, k, dim=1)
        cand = q >= top.values[:, -1:]  # at least k per row; more when others tie with the k-th
        exact = cand.sum(dim=1) == k  # usually: then top-k's set is the answer, in an unknown order
        cols = torch.sort(top.indices[exact], dim=1).values  # ascending index per row
        order = torch.sort(-q[exact].gather(1, cols), dim=1, stable=True).indices  # ties keep index order
        idx = torch.zeros((stop - start, k), dtype=torch.int64, device=dev)
        idx[exact] = cols.gather(1, order)
        for r in torch.nonzero(~exact)[:, 0].tolist():  # rows with ties across the k-th place
            c = torch.nonzero(cand[r])[:, 0]
            idx[r] = c[torch.sort(-q[r, c], stable=True).indices[:k]]
        out[start:stop] = idx.cpu().numpy()
    return out


def neighbour_mean(values: np.ndarray, neighbours: np.ndarray, *, chunk: int = 4096) -> np.ndarray:
    """(n, L): row i is the mean of `values` over row i's neighbours (chunked: n·k·L never held at once)."""
    values = np.asarray(values, dtype=np.float64)
    out = np.zeros_like(values)
    if neighbours.shape[1] == 0:
        return values.copy()
    for start in range(0, len(values), chunk):
        out[start : start + chunk] = values[neighbours[start : start + chunk]].mean(axis=1)
    return out


def blend(probs: np.ndarray, neighbours: np.ndarray, beta: float) -> np.ndarray:
    """P' = (1 − β)·P + β·mean_kNN(P), float32 (rows stay distributions: a mix of distributions)."""
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    p = np.asarray(probs, dtype=np.float64)
    return ((1.0 - beta) * p + beta * neighbour_mean(p, neighbours)).astype(np.float32)


def entity_types(labels: Sequence[str]) -> np.ndarray:
    """Type id per label id: B-X and I-X share one (X's), O and any other label have their own."""
    types: dict[str, int] = {}
    out = []
    for label in labels:
        name = label[2:] if label[:2] in ("B-", "I-") else f"={label}"
        out.append(types.setdefault(name, len(types)))
    return np.asarray(out, dtype=np.int64)


def neighbour_majority(
    label_ids: np.ndarray, neighbours: np.ndarray, types: np.ndarray, *, chunk: int = 4096
) -> np.ndarray:
    """(n,) the most frequent type among each word's neighbours' labels (ties: lower type id); −1 if none."""
    t = types[np.asarray(label_ids, dtype=np.int64)]
    n_types = int(types.max()) + 1 if len(types) else 0
    out = np.full(len(t), -1, dtype=np.int64)
    if neighbours.shape[1] == 0:
        return out
    for start in range(0, len(t), chunk):
        nt = t[neighbours[start : start + chunk]]  # (c, k)
        counts = np.stack([(nt == c).sum(axis=1) for c in range(n_types)], axis=1)
        out[start : start + chunk] = counts.argmax(axis=1)  # argmax takes the first (lowest) maximum
    return out


def agrees(label_ids: np.ndarray, neighbours: np.ndarray, types: np.ndarray) -> np.ndarray:
    """(n,) bool: the word's label has the type its neighbours' majority has."""
    return types[np.asarray(label_ids, dtype=np.int64)] == neighbour_majority(label_ids, neighbours, types)


def denoise_targets(
    soft: Sequence[np.ndarray],
    hard: Sequence[np.ndarray] | None,
    neighbours: np.ndarray,
    labels: Sequence[str],
    beta: float = DEFAULT_BETA,
) -> tuple[list[np.ndarray], list[np.ndarray] | None, float]:
    """The student's targets on D_T, per sentence: blended soft labels, hard votes kept where the
    neighbours' majority agrees (else NO_HARD_LABEL), and the agreement rate (share of words whose
    argmax label agrees with its neighbours' majority; label-free)."""
    lengths = [len(p) for p in soft]
    flat = np.concatenate(soft) if soft else np.zeros((0, len(labels)), np.float32)
    if len(flat) != len(neighbours):
        raise ValueError(f"{len(flat)} words but {len(neighbours)} neighbour rows")
    types = entity_types(labels)
    majority = neighbour_majority(flat.argmax(axis=1), neighbours, types)
    agree = types[flat.argmax(axis=1)] == majority
    rate = float(agree.mean()) if len(agree) else 0.0
    cuts = np.cumsum(lengths)[:-1]
    blended = np.split(blend(flat, neighbours, beta), cuts) if len(flat) else [p.copy() for p in soft]
    if hard is None:
        return blended, None, rate
    votes = np.concatenate(hard).astype(np.int64) if hard else np.zeros(0, np.int64)
    if len(votes) != len(flat):
        raise ValueError(f"{len(votes)} votes for {len(flat)} words")
    voted = votes != NO_HARD_LABEL
    keep = np.zeros(len(votes), dtype=bool)
    keep[voted] = types[votes[voted]] == majority[voted]
    filtered = np.where(keep, votes, NO_HARD_LABEL).astype(np.int64)
    return blended, np.split(filtered, cuts) if len(flat) else [h.copy() for h in hard], rate


def consistency_weights(
    label_ids: np.ndarray,
    neighbours: np.ndarray,
    labels: Sequence[str],
    *,
    alpha: float = COLADA_ALPHA,
    mu: float = COLADA_MU,
) -> np.ndarray:
    """CoLaDa's per-word weight in (0, 1] (see the module docstring), float32 (n,)."""
    y = np.asarray(label_ids, dtype=np.int64)
    types = entity_types(labels)
    if neighbours.shape[1] == 0:
        return np.ones(len(y), dtype=np.float32)
    count = (types[y[neighbours]] == types[y][:, None]).sum(axis=1).astype(np.float64)
    weights = np.ones(len(y), dtype=np.float64)
    for c in np.unique(y):
        mask = y == c
        top = count[mask].max()
        score = count[mask] / top if top > 0 else np.zeros(int(mask.sum()))
        w = 1.0 / (1.0 + np.exp(-alpha * (score - mu * score.mean())))
        weights[mask] = w / w.max()
    return weights.astype(np.float32)
