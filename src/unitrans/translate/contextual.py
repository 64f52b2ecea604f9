"""Contextual choice of translations (optional, off by default): each token, not each word type, picks
its translation, so a polysemous word need not get the same one in every sentence.

For a source token with contextual vector h (the encoder's state at the map's layer, the mean of the
word's subwords, exactly as its type vector averages them), normalized like the source type vectors and
mapped by the kept map W, the translation is, among its word's k best CSLS candidates (k = 5 by default),

    argmax_c  2·cos(W h, t_c) − r_T(t_c)

which is CSLS with the token in place of its type: the query's own r term is the same for every candidate
and drops out. Why this rule and not CSLS + λ·cos: it has no weight to tune (tuning one would need labels
or a dictionary, which a zero-resource run does not have); it corrects hubs the same way the lexicon does;
and it reduces to the lexicon where context adds nothing (a word seen once has h = its type vector, so it
gets its lexicon translation). The top-k restriction lets context choose between plausible translations
only, never pull in an unrelated word that happens to sit near one sentence. Ties go to the better CSLS
rank. Nothing is sampled: the choice is a deterministic function of the inputs and settings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from unitrans.data import Sentence
from unitrans.translate.alignment import Alignment
from unitrans.translate.csls import csls_neighbours, unit_rows
from unitrans.translate.embeddings import WordEmbeddings
from unitrans.translate.encoder_vectors import TypeVectorConfig, token_vectors, type_key


def normalizer(reference: np.ndarray, how: str) -> Callable[[np.ndarray], np.ndarray]:
    """The transform `embeddings.normalize(reference, how)` applies to `reference`, for other rows:
    centering subtracts the reference's mean at that step, so a token lands where its type vector does."""
    ref = reference.astype(np.float32, copy=True)
    steps: list[np.ndarray | None] = []  # a mean to subtract, or None for renorm
    for step in filter(None, (s.strip() for s in how.split(","))):
        if step == "center":
            mean = ref.mean(axis=0, keepdims=True)
            ref -= mean
            steps.append(mean)
        else:
            ref /= np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12)
            steps.append(None)

    def apply(rows: np.ndarray) -> np.ndarray:
        out = rows.astype(np.float32, copy=True)
        for mean in steps:
            if mean is None:
                out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
            else:
                out -= mean
        return out

    return apply


def choose(queries: np.ndarray, candidates: np.ndarray, tgt: np.ndarray, r_tgt: np.ndarray) -> np.ndarray:
    """Per query row (mapped), the column of its `candidates` row (target indices, best CSLS first) that
    maximizes 2·cos(query, t_c) − r_T(t_c); the first such column on ties."""
    q = unit_rows(queries).numpy()
    t = tgt[candidates].astype(np.float32)  # (m, k, d): only the candidates are normalized
    t /= np.maximum(np.linalg.norm(t, axis=2, keepdims=True), 1e-12)
    cos = np.einsum("md,mkd->mk", q, t)
    return (2 * cos - r_tgt[candidates]).argmax(axis=1)


def contextual_choices(
    source: Sequence[Sentence],
    alignment: Alignment,
    src_raw: WordEmbeddings,
    vectors: TypeVectorConfig,
    *,
    normalize: str,
    k: int,
    csls_k: int,
    progress: bool = True,
) -> list[list[str | None]]:
    """Per source sentence and token, its contextual translation; None where there is none (a word
    outside the vocabulary, or one cut by `max_length`): the lexicon's translation applies there.

    `src_raw` is the source type vectors of the map's layer before normalization (`alignment.src` is
    them after it).
    """
    if alignment.layer is None or src_raw.words != alignment.src.words:
        raise ValueError("contextual choice needs the encoder layer and raw type vectors of the map")
    mapped = alignment.mapped_source()
    nb = csls_neighbours(mapped, alignment.tgt.vectors, k=csls_k, topn=min(k, len(alignment.tgt)))
    index = alignment.src.index()
    prepare = normalizer(src_raw.vectors, normalize)
    out: list[list[str | None]] = [[None] * len(s) for s in source]
    for sent_ids, word_ids, states in token_vectors(source, vectors, alignment.layer, progress=progress):
        words = [source[si].words[wi] for si, wi in zip(sent_ids, word_ids, strict=True)]
        rows = [index.get(type_key(w, vectors.lowercase)) for w in words]
        known = [j for j, r in enumerate(rows) if r is not None]
        if not known:
            continue
        candidates = nb.indices[[rows[j] for j in known]]
        queries = prepare(states[known]) @ alignment.W.T
        picked = choose(queries, candidates, alignment.tgt.vectors, nb.r_tgt)
        for j, col, cands in zip(known, picked, candidates, strict=True):
            out[sent_ids[j]][word_ids[j]] = alignment.tgt.words[cands[col]]
    return out
