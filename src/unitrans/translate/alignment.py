"""Orthogonal mapping of source onto target embeddings: identical-string seed, Procrustes, CSLS refinement.

Follows MUSE's supervised pipeline (`--dico_train identical_char`, `--n_refinement`): solve Procrustes on
the seed pairs, then rebuild the dictionary from mutual CSLS nearest neighbours among the most frequent
words and solve again. Every map is scored by MUSE's unsupervised validation criterion (mean cosine of
the S2T CSLS dictionary of the most frequent source words) or by the mutual-neighbour rate (the share of
the most frequent source words whose CSLS translation has them as its own CSLS translation), and the
best one is kept; the same criterion chooses among candidate encoder layers. The default is the mutual
rate: mean cosines of different encoder layers are not comparable (each layer has its own anisotropy;
on en-es the mean cosine ranked the layers almost in reverse of their precision), a rate is.

Target words that are far more frequent, relatively, in the source text than in the target text
(`borrowing_ratio`, default 10x: "the", "of", "world" in English titles quoted in Spanish news) are
source-language borrowings, not translations: they are left out of the target vocabulary, and so of the
identical-string seed, because encoder-derived vectors put a string close to itself in any language.
No label or bilingual dictionary is consulted, unless the user gives one (`--dictionary`): its pairs
whose both words are in the vocabularies join the identical strings in the first solve only (MUSE's
`--dico_train` with refinement), and the map is then "dictionary-assisted" (see `translate.dictionary`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from unitrans.errors import UnitransError
from unitrans.train.config import check_finite
from unitrans.translate.csls import csls_neighbours
from unitrans.translate.embeddings import NORMALIZATIONS, WordEmbeddings, restrict

logger = logging.getLogger(__name__)
CRITERIA = ("mutual", "mean_cosine")


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
    criterion: str = field(
        default="mutual", metadata={"help": "Map/layer selection: 'mutual' rate or MUSE's 'mean_cosine'."}
    )
    borrowing_ratio: float | None = field(
        default=10.0,
        metadata={
            "help": "Drop target words whose relative frequency in the source text is this many "
            "times higher (needs corpus counts; None keeps all)."
        },
    )

    def __post_init__(self) -> None:
        check_finite(self)
        if self.criterion not in CRITERIA:
            raise UnitransError(f"criterion must be one of {CRITERIA}, got {self.criterion!r}")
        if self.borrowing_ratio is not None and self.borrowing_ratio <= 1:
            raise UnitransError("borrowing_ratio must be > 1 (or None)")
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
    criterion: float  # the configured criterion under W
    history: tuple[tuple[int, float, float], ...]  # (pairs solved on, mean cosine, mutual rate) per solve
    layer: int | None = None
    dropped_borrowings: int = 0
    dictionary_pairs: int = 0
    """Seed pairs that came from a user's dictionary (beyond the identical strings); 0: zero-resource."""

    def mapped_source(self) -> np.ndarray:
        return self.src.vectors @ self.W.T


def identical_seed(src: WordEmbeddings, tgt: WordEmbeddings) -> np.ndarray:
    """Pairs (i, j) of words spelled identically in both vocabularies, in source frequency order."""
    tgt_index = tgt.index()
    pairs = [(i, tgt_index[w]) for i, w in enumerate(src.words) if w in tgt_index]
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def word_pair_seed(pairs: Sequence[tuple[str, str]], src: WordEmbeddings, tgt: WordEmbeddings) -> np.ndarray:
    """Pairs (i, j) of given (source, target) words present in both vocabularies, in the given order."""
    src_index, tgt_index = src.index(), tgt.index()
    rows = [(src_index[s], tgt_index[t]) for s, t in pairs if s in src_index and t in tgt_index]
    return np.array(rows, dtype=np.int64).reshape(-1, 2)


def procrustes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Orthogonal W minimizing ||W xᵢ - yᵢ|| over the rows of x, y: W = UVᵀ with UΣVᵀ = SVD(Yᵀ X)."""
    u, _, vt = np.linalg.svd(y.T.astype(np.float64) @ x.astype(np.float64))
    return (u @ vt).astype(np.float32)


def mutual_csls_dictionary(
    mapped: np.ndarray, tgt: np.ndarray, *, k: int = 10, max_rank: int = 10_000
) -> np.ndarray:
    """MUSE's `S2T&T2S` dictionary: mutual CSLS nearest neighbours, both among the top ranks."""
    s2t = csls_neighbours(mapped, tgt, k=k, topn=1, queries=max_rank).indices[:, 0]
    t2s = csls_neighbours(tgt, mapped, k=k, topn=1, queries=max_rank).indices[:, 0]
    return _mutual(s2t, t2s, max_rank)


def mean_cosine_criterion(
    mapped: np.ndarray, tgt: np.ndarray, *, k: int = 10, max_rank: int = 10_000
) -> float:
    """MUSE's unsupervised model-selection criterion: mean cosine of the S2T CSLS translations."""
    nb = csls_neighbours(mapped, tgt, k=k, topn=1, queries=max_rank)
    return float(nb.cosines[:, 0].mean())


def align(
    src: WordEmbeddings,
    tgt: WordEmbeddings,
    config: AlignConfig,
    *,
    layer: int | None = None,
    seed_words: Sequence[tuple[str, str]] = (),
) -> Alignment:
    """Seed, solve, refine; keep the map with the best criterion. `seed_words` (a user's dictionary)
    join the identical strings in the first solve."""
    if src.dim != tgt.dim:
        raise UnitransError(f"source vectors have {src.dim} dimensions, target vectors {tgt.dim}")
    n_target = len(tgt)
    if config.borrowing_ratio is not None:
        tgt = drop_borrowings(src, tgt, config.borrowing_ratio)
    src_n, tgt_n = src.normalized(config.normalize), tgt.normalized(config.normalize)
    x, y = src_n.vectors, tgt_n.vectors
    pairs = identical_seed(src_n, tgt_n)
    extra = word_pair_seed(seed_words, src_n, tgt_n) if seed_words else np.zeros((0, 2), np.int64)
    if len(extra):
        known = {tuple(p) for p in pairs.tolist()}
        extra = np.array([p for p in extra.tolist() if tuple(p) not in known], np.int64).reshape(-1, 2)
        pairs = np.concatenate([pairs, extra])
    if len(pairs) < 2:
        what = "seed pairs (identical words and dictionary pairs)" if seed_words else "identical words"
        raise UnitransError(
            f"only {len(pairs)} {what} in both vocabularies: too few to seed the map "
            "(are the two files in the same script and tokenized alike?)"
        )
    k, max_rank = config.csls_k, config.dico_max_rank
    best: tuple[float, np.ndarray] | None = None
    history: list[tuple[int, float, float]] = []
    for round_no in range(config.refinement_rounds + 1):
        w = procrustes(x[pairs[:, 0]], y[pairs[:, 1]])
        mapped = x @ w.T
        s2t = csls_neighbours(mapped, y, k=k, topn=1, queries=max_rank)
        t2s = csls_neighbours(y, mapped, k=k, topn=1, queries=max_rank)
        mean_cos = float(s2t.cosines[:, 0].mean())
        solved_on = len(pairs)
        pairs = _mutual(s2t.indices[:, 0], t2s.indices[:, 0], max_rank)
        rate = len(pairs) / min(max_rank, len(x))
        history.append((solved_on, mean_cos, rate))
        score = rate if config.criterion == "mutual" else mean_cos
        logger.info(
            "layer %s solve %d on %d pairs: mean cos %.4f, mutual %.4f",
            layer,
            round_no,
            solved_on,
            mean_cos,
            rate,
        )
        if best is None or score > best[0]:
            best = (score, w)
        if len(pairs) < 2:
            break
    assert best is not None
    return Alignment(
        best[1], src_n, tgt_n, history[0][0], best[0], tuple(history), layer, n_target - len(tgt), len(extra)
    )


def drop_borrowings(src: WordEmbeddings, tgt: WordEmbeddings, ratio: float) -> WordEmbeddings:
    """`tgt` without words whose relative frequency in the source corpus is `ratio` times higher."""
    if src.counts is None or tgt.counts is None:
        return tgt
    src_index = src.index()
    n_src, n_tgt = float(src.counts.sum()), float(tgt.counts.sum())
    keep = [
        j
        for j, word in enumerate(tgt.words)
        if word not in src_index or src.counts[src_index[word]] / n_src <= ratio * tgt.counts[j] / n_tgt
    ]
    return restrict(tgt, keep)


def _mutual(s2t: np.ndarray, t2s: np.ndarray, max_rank: int) -> np.ndarray:
    """Pairs (i, j), both among the first `max_rank`, that are each other's nearest neighbours."""
    pairs = [(i, int(j)) for i, j in enumerate(s2t) if j < len(t2s) and t2s[j] == i]
    return np.array([p for p in pairs if p[0] < max_rank and p[1] < max_rank], dtype=np.int64).reshape(-1, 2)


def select_and_align(
    src_layers: Mapping[int, WordEmbeddings],
    tgt_layers: Mapping[int, WordEmbeddings],
    config: AlignConfig,
    *,
    seed_words: Sequence[tuple[str, str]] = (),
    processes: int = 1,
) -> tuple[Alignment, dict[int, float]]:
    """Align every candidate layer and keep the one with the best unsupervised criterion.

    `processes` > 1 aligns the layers side by side in forked one-thread processes (`runtime.forked_map`);
    only where this process has one thread, so that each layer's numbers are those of the loop."""
    import torch

    from unitrans.model.runtime import forked_map

    layers = list(src_layers)
    parts = max(1, min(processes, len(layers))) if torch.get_num_threads() == 1 else 1

    def run(part: int) -> list[Alignment]:
        return [
            align(src_layers[layer], tgt_layers[layer], config, layer=layer, seed_words=seed_words)
            for layer in layers[part::parts]
        ]

    done = forked_map(run, parts)
    results = {a.layer: a for part in done for a in part}
    results = {layer: results[layer] for layer in layers}  # the loop's order: ties go to the first
    scores = {layer: a.criterion for layer, a in results.items()}
    chosen = max(scores, key=lambda layer: scores[layer])
    logger.info("criterion per layer %s -> layer %d", {k: round(v, 4) for k, v in scores.items()}, chosen)
    return results[chosen], scores
