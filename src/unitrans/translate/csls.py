"""Cross-domain similarity local scaling (CSLS, Conneau et al. 2018, Eqs. 3-5), in bounded memory.

CSLS(Ws, t) = 2 cos(Ws, t) - r_T(Ws) - r_S(t), where r_T(Ws) is the mean cosine of the mapped source
word to its K nearest target words and r_S(t) the mean cosine of the target word to its K nearest
mapped source words.

Written by hand because no library computes both neighbourhood means and the CSLS neighbours of a
100,000 x 100,000 vocabulary pair on a small CPU: faiss is not a dependency and MUSE keeps whole
similarity rows. Here one pass over blocks of source rows computes every similarity once and takes
from each block (a) each row's top-C cosines (the CSLS candidates and r_T) and (b) each column's top-K
(r_S). Top-k over 100,000 columns is the slow part of a naive loop, so both use a chunk-max trick: the
k largest entries of a row lie in the k chunks with the largest maxima, and `amax` over chunks is cheap.
The candidates are then rescored exactly (float32) and a bound proves, per row, that no target outside
the candidates can beat them; rows where it fails are recomputed against every target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

_CHUNK = 64  # columns per chunk in the chunk-max top-k
_ROW_GROUP = 4  # rows per group for the column top-k
_BF16_MARGIN = 0.02  # covers bfloat16 rounding of cosines in the exactness bound


@dataclass(frozen=True)
class CslsNeighbours:
    """The `topn` best targets of each query row by CSLS, with their scores and plain cosines."""

    indices: np.ndarray  # (q, topn) int64, best first
    scores: np.ndarray  # (q, topn) float32, full CSLS incl. both r terms
    cosines: np.ndarray  # (q, topn) float32
    r_src: np.ndarray  # (n,) mean cosine of each source row to its K nearest targets
    r_tgt: np.ndarray  # (m,) mean cosine of each target row to its K nearest sources
    recomputed_rows: int  # rows whose candidate list could not be proven exact and were redone


def fast_dtype() -> torch.dtype:
    """bfloat16 where the CPU multiplies it natively (3-7x faster here), else float32."""
    from unitrans.model.runtime import use_bf16

    return torch.bfloat16 if use_bf16(torch.device("cpu"), None) else torch.float32


def unit_rows(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(x, dtype=torch.float32)
    return t / t.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _row_topk(blocks: list[torch.Tensor], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of each row over column-concatenated blocks; the first block has a multiple of _CHUNK columns."""
    main = blocks[0]
    b, m_main = main.shape
    vals: list[torch.Tensor] = []
    idxs: list[torch.Tensor] = []
    if m_main:
        n_chunks = m_main // _CHUNK
        kc = min(k, n_chunks)
        chunk_max = main.view(b, n_chunks, _CHUNK).amax(dim=2)
        best_chunks = chunk_max.topk(kc, dim=1).indices  # (b, kc)
        cols = (best_chunks.unsqueeze(2) * _CHUNK + torch.arange(_CHUNK)).reshape(b, -1)
        vals.append(main.gather(1, cols))
        idxs.append(cols)
    if blocks[1].shape[1]:
        vals.append(blocks[1])
        idxs.append(torch.arange(m_main, m_main + blocks[1].shape[1]).expand(b, -1))
    v = torch.cat(vals, dim=1).float()
    i = torch.cat(idxs, dim=1)
    top = v.topk(min(k, v.shape[1]), dim=1)
    return top.values, i.gather(1, top.indices)


def _col_topk(block: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k values of each column of `block` (b, m) -> (m, k'), via row-group maxima."""
    b, m = block.shape
    whole = (b // _ROW_GROUP) * _ROW_GROUP
    parts: list[torch.Tensor] = []
    if whole:
        n_groups = whole // _ROW_GROUP
        grouped = block[:whole].view(n_groups, _ROW_GROUP, m)
        group_max = grouped.amax(dim=1)  # (n_groups, m)
        kg = min(k, n_groups)
        best_groups = group_max.topk(kg, dim=0).indices  # (kg, m)
        rows = (best_groups.unsqueeze(1) * _ROW_GROUP + torch.arange(_ROW_GROUP).view(1, -1, 1)).reshape(
            -1, m
        )
        parts.append(block.gather(0, rows))
    if whole < b:
        parts.append(block[whole:])
    v = torch.cat(parts, dim=0).float()
    return v.topk(min(k, v.shape[0]), dim=0).values.T


def csls_neighbours(
    src: np.ndarray | torch.Tensor,
    tgt: np.ndarray | torch.Tensor,
    *,
    k: int = 10,
    topn: int = 1,
    queries: int | None = None,
    candidates: int = 32,
    block_size: int = 4096,
    dtype: torch.dtype | None = None,
    dense_max_cells: int = 1 << 22,
    progress: bool = False,
) -> CslsNeighbours:
    """CSLS neighbours in `tgt` of the first `queries` rows of `src` (default all); rows need not be unit.

    r_src and r_tgt are computed over the whole of `src` and `tgt`, as in MUSE. `dtype` is the matmul
    precision (default: bfloat16 where native); neighbours are exact in float32 unless two candidates tie
    within bfloat16 rounding of r. Up to `dense_max_cells` similarities are computed at once, exactly.
    """
    if k < 1 or topn < 1:
        raise ValueError("k and topn must be >= 1")
    s = unit_rows(src)
    t = unit_rows(tgt)
    n, m = s.shape[0], t.shape[0]
    q = n if queries is None else min(queries, n)
    k_src, k_tgt = min(k, m), min(k, n)
    if n * m <= dense_max_cells:
        return _dense(s, t, k_src, k_tgt, topn, q)
    dtype = dtype or fast_dtype()
    n_cand = min(m, max(candidates, k_src, topn))
    m_main = (m // _CHUNK) * _CHUNK
    t_main = t[:m_main].to(dtype).T.contiguous()
    t_rest = t[m_main:].to(dtype).T.contiguous()
    r_src = torch.empty(n)
    cand_cos = torch.empty(q, n_cand)
    cand_idx = torch.empty(q, n_cand, dtype=torch.long)
    col_top = torch.full((m, k_tgt), -math.inf)
    with torch.no_grad():
        for start in tqdm(range(0, n, block_size), desc="CSLS", unit="block", disable=not progress):
            blk = s[start : start + block_size].to(dtype)
            parts = [blk @ t_main, blk @ t_rest]
            width = n_cand if start < q else k_src
            vals, idx = _row_topk(parts, width)
            r_src[start : start + blk.shape[0]] = vals[:, :k_src].mean(dim=1)
            if start < q:
                rows = min(q, start + blk.shape[0]) - start
                cand_cos[start : start + rows] = vals[:rows]
                cand_idx[start : start + rows] = idx[:rows]
            block_cols = torch.cat([_col_topk(p, k_tgt) for p in parts if p.shape[1]], dim=0)
            col_top = torch.cat([col_top, block_cols], dim=1).topk(k_tgt, dim=1).values
    r_tgt = col_top.mean(dim=1)
    best_score = torch.empty(q, topn)
    best_idx = torch.empty(q, topn, dtype=torch.long)
    for start in range(0, q, 1024):  # exact rescoring of the candidates in float32
        idx = cand_idx[start : start + 1024]
        cos = torch.einsum("bd,bcd->bc", s[start : min(q, start + 1024)], t[idx])
        order = (2 * cos - r_tgt[idx]).topk(topn, dim=1)
        best_score[start : start + 1024] = order.values
        best_idx[start : start + 1024] = idx.gather(1, order.indices)
    # a target outside the candidates has cos <= the smallest candidate cosine (+ rounding)
    margin = 0.0 if dtype == torch.float32 else _BF16_MARGIN
    bound = 2 * (cand_cos[:, -1] + margin) - r_tgt.min()
    unproven = torch.nonzero(best_score[:, -1] < bound).flatten() if n_cand < m else torch.empty(0)
    for start in range(0, len(unproven), 1024):  # float32 rows: 1024 x 100k is 400 MB
        rows = unproven[start : start + 1024]
        full = 2 * (s[rows] @ t.T) - r_tgt
        top = full.topk(topn, dim=1)
        best_score[rows], best_idx[rows] = top.values, top.indices
    best_cos = torch.cat(
        [
            torch.einsum("bd,bcd->bc", s[i : min(q, i + 1024)], t[best_idx[i : i + 1024]])
            for i in range(0, q, 1024)
        ]
    )
    return CslsNeighbours(
        indices=best_idx.numpy(),
        scores=(best_score - r_src[:q].unsqueeze(1)).numpy(),
        cosines=best_cos.numpy(),
        r_src=r_src.numpy(),
        r_tgt=r_tgt.numpy(),
        recomputed_rows=len(unproven),
    )


def _dense(s: torch.Tensor, t: torch.Tensor, k_src: int, k_tgt: int, topn: int, q: int) -> CslsNeighbours:
    """Small vocabularies: the whole similarity matrix in float32 (exact, no blocking overhead)."""
    with torch.no_grad():
        cos = s @ t.T
        r_src = cos.topk(k_src, dim=1).values.mean(dim=1)
        r_tgt = cos.topk(k_tgt, dim=0).values.mean(dim=0)
        top = (2 * cos[:q] - r_src[:q, None] - r_tgt[None, :]).topk(min(topn, t.shape[0]), dim=1)
        return CslsNeighbours(
            indices=top.indices.numpy(),
            scores=top.values.numpy(),
            cosines=cos[:q].gather(1, top.indices).numpy(),
            r_src=r_src.numpy(),
            r_tgt=r_tgt.numpy(),
            recomputed_rows=0,
        )


def cosine_neighbours(
    src: np.ndarray | torch.Tensor, tgt: np.ndarray | torch.Tensor, *, topn: int = 1, block_size: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Plain nearest neighbours by cosine (float32): (indices (n, topn), cosines (n, topn))."""
    s, t = unit_rows(src), unit_rows(tgt)
    out_i, out_v = [], []
    with torch.no_grad():
        for start in range(0, s.shape[0], block_size):
            top = (s[start : start + block_size] @ t.T).topk(min(topn, t.shape[0]), dim=1)
            out_i.append(top.indices)
            out_v.append(top.values)
    return torch.cat(out_i).numpy(), torch.cat(out_v).numpy()
