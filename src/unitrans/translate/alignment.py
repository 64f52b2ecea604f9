"""Orthogonal mapping of source onto target embeddings: identical-string seed, Procrustes, CSLS refinement.

Follows MUSE's supervised pipeline (`--dico_train identical_char`, `--n_refinement`): solve Procrustes on
the seed pairs, then rebuild the dictionary from mutual CSLS nearest neighbours among the most frequent
words and solve again. Every map is scored by MUSE's unsupervised validation criterion (mean cosine of
the S2T CSLS dictionary of the most frequent source words) and the best one is kept; the same criterion
chooses among candidate encoder layers. No label or bilingual dictionary is ever consulted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from unitrans.errors import UnitransError
from unitrans.translate.csls import csls_neighbours
from unitrans.translate.embeddings import NORMALIZATIONS, WordEmbeddings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlignConfig:
    """Settings of the map P (MUSE defaults except the normalization, which suits encoder vectors)."""

    normalize: str = field(
        default="center,renorm",
        metadata={"help": f"Embedding normalization before mapping, one of {NORMALIZATIONS}."},
    )
    refinement_rounds: int = field(default=3, metadata={"help": "Procrustes re-solves after the first."})
    dico_max_rank: int = field(
        default=10_000, metadata={"help": "Refinement/criterion uses the N most frequent words."}
    )
    csls_k: int = field(default=10, metadata={"help": "K of the CSLS neighbourhood means (Eqs. 4-5)."})

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZATIONS:
            raise UnitransError(f"normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}")
        if self.refinement_rounds < 0 or self.dico_max_rank < 1 or self.csls_k < 1:
            raise UnitransError("refinement_rounds must be >= 0, dico_max_rank and csls_k >= 1")


@dataclass(frozen=True)
class Alignment:
    """The kept map W (target ≈ W source) and how it was found."""

    W: np.ndarray  # (d, d) orthogonal
    src: WordEmbeddings  # normalized source embeddings (unmapped)
    tgt: WordEmbeddings  # normalized target embeddings
    seed_pairs: int
    criterion: float  # mean cosine of the CSLS dictionary under W
    history: tuple[tuple[int, float], ...]  # (dictionary size, criterion) per solve
    layer: int | None = None

    def mapped_source(self) -> np.ndarray:
        return self.src.vectors @ self.W.T


def identical_seed(src: WordEmbeddings, tgt: WordEmbeddings) -> np.ndarray:
    """Pairs (i, j) of words spelled identically in both vocabularies, in source frequency order."""
    tgt_index = tgt.index()
    pairs = [(i, tgt_index[w]) for i, w in enumerate(src.words) if w in tgt_index]
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def procrustes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Orthogonal W minimizing ||W xᵢ - yᵢ|| over the rows of x, y: W = UVᵀ with UΣVᵀ = SVD(Yᵀ X)."""
    u, _, vt = np.linalg.svd(y.T.astype(np.float64) @ x.astype(np.float64))
    return (u @ vt).astype(np.float32)


def _one_way(src: np.ndarray, tgt: np.ndarray, k: int, max_rank: int) -> set[tuple[int, int]]:
    nb = csls_neighbours(src, tgt, k=k, topn=1, queries=max_rank)
    return {(i, int(j)) for i, j in enumerate(nb.indices[:, 0]) if j < max_rank}


def mutual_csls_dictionary(
    mapped: np.ndarray, tgt: np.ndarray, *, k: int = 10, max_rank: int = 10_000
) -> np.ndarray:
    """MUSE's `S2T&T2S` dictionary: mutual CSLS nearest neighbours, both among the top ranks."""
    s2t = _one_way(mapped, tgt, k, max_rank)
    t2s = {(i, j) for j, i in _one_way(tgt, mapped, k, max_rank)}
    return np.array(sorted(s2t & t2s), dtype=np.int64).reshape(-1, 2)


def mean_cosine_criterion(
    mapped: np.ndarray, tgt: np.ndarray, *, k: int = 10, max_rank: int = 10_000
) -> float:
    """MUSE's unsupervised model-selection criterion: mean cosine of the S2T CSLS translations."""
    nb = csls_neighbours(mapped, tgt, k=k, topn=1, queries=max_rank)
    return float(nb.cosines[:, 0].mean())


def align(
    src: WordEmbeddings, tgt: WordEmbeddings, config: AlignConfig, *, layer: int | None = None
) -> Alignment:
    """Seed, solve, refine; keep the map with the best criterion."""
    if src.dim != tgt.dim:
        raise UnitransError(f"source vectors have {src.dim} dimensions, target vectors {tgt.dim}")
    src_n, tgt_n = src.normalized(config.normalize), tgt.normalized(config.normalize)
    x, y = src_n.vectors, tgt_n.vectors
    pairs = identical_seed(src_n, tgt_n)
    if len(pairs) < 2:
        raise UnitransError(
            f"only {len(pairs)} identical words in both vocabularies: too few to seed the map "
            "(are the two files in the same script and tokenized alike?)"
        )
    kw = {"k": config.csls_k, "max_rank": config.dico_max_rank}
    best: tuple[float, np.ndarray] | None = None
    history: list[tuple[int, float]] = []
    for round_no in range(config.refinement_rounds + 1):
        w = procrustes(x[pairs[:, 0]], y[pairs[:, 1]])
        mapped = x @ w.T
        score = mean_cosine_criterion(mapped, y, **kw)
        history.append((len(pairs), score))
        logger.info("layer %s solve %d: %d pairs, criterion %.4f", layer, round_no, len(pairs), score)
        if best is None or score > best[0]:
            best = (score, w)
        if round_no < config.refinement_rounds:
            pairs = mutual_csls_dictionary(mapped, y, **kw)
            if len(pairs) < 2:
                break
    assert best is not None
    seed_size = history[0][0]
    return Alignment(best[1], src_n, tgt_n, seed_size, best[0], tuple(history), layer)


def select_and_align(
    src_layers: Mapping[int, WordEmbeddings], tgt_layers: Mapping[int, WordEmbeddings], config: AlignConfig
) -> tuple[Alignment, dict[int, float]]:
    """Align every candidate layer and keep the one with the best unsupervised criterion."""
    results = {
        layer: align(src_layers[layer], tgt_layers[layer], config, layer=layer) for layer in src_layers
    }
    scores = {layer: a.criterion for layer, a in results.items()}
    chosen = max(scores, key=lambda layer: scores[layer])
    logger.info("criterion per layer %s -> layer %d", {k: round(v, 4) for k, v in scores.items()}, chosen)
    return results[chosen], scores
