"""Induced lexicons (every source word's CSLS translation) and their evaluation against a dictionary.

The evaluation follows MUSE's word-translation protocol: a source word counts as correct at k if any of
its gold translations is among its k best targets; only source words with at least one gold translation
in the target vocabulary are scored. Dictionaries are MUSE's format (`source target` per line).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unitrans.atomic import write_text_atomic
from unitrans.data.textfile import load_text, split_fields
from unitrans.errors import InputError, UnitransError
from unitrans.translate.alignment import Alignment
from unitrans.translate.csls import cosine_neighbours, csls_neighbours


@dataclass(frozen=True)
class Lexicon:
    """source word -> (target word, CSLS score), in source frequency order."""

    source: tuple[str, ...]
    target: tuple[str, ...]
    score: np.ndarray  # (n,) float32; NaN where the target comes from the user's dictionary
    from_dictionary: frozenset[str] = frozenset()
    """Source words whose target a user's dictionary gave (`translate.dictionary.override_lexicon`)."""

    def __len__(self) -> int:
        return len(self.source)

    def as_dict(self) -> dict[str, tuple[str, float]]:
        return {s: (t, float(c)) for s, t, c in zip(self.source, self.target, self.score, strict=True)}


def induce_lexicon(alignment: Alignment, *, k: int = 10, progress: bool = False) -> Lexicon:
    """The CSLS nearest target word of every source word under the kept map."""
    nb = csls_neighbours(alignment.mapped_source(), alignment.tgt.vectors, k=k, topn=1, progress=progress)
    targets = tuple(alignment.tgt.words[j] for j in nb.indices[:, 0])
    return Lexicon(alignment.src.words, targets, nb.scores[:, 0].astype(np.float32))


def write_lexicon(path: str | Path, lexicon: Lexicon) -> None:
    """TSV `source<TAB>target<TAB>csls` with a header line, atomically; with a user's dictionary a fourth
    column `origin` says which entries it gave (`dictionary`, CSLS empty) and which were `induced`."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_NONE, escapechar="\\")
    marked = bool(lexicon.from_dictionary)
    writer.writerow(["source", "target", "csls", *(["origin"] if marked else [])])
    for s, t, c in zip(lexicon.source, lexicon.target, lexicon.score, strict=True):
        if not marked:
            writer.writerow([s, t, f"{c:.4f}"])
        elif s in lexicon.from_dictionary:
            writer.writerow([s, t, "", "dictionary"])
        else:
            writer.writerow([s, t, f"{c:.4f}", "induced"])
    write_text_atomic(path, buf.getvalue())


def read_dictionary(path: str | Path, *, lowercase: bool = True) -> dict[str, set[str]]:
    """A MUSE bilingual dictionary: `source target` per line (tab or space); repeated sources accumulate.

    Read like every other input file (encoding rules and one-line errors of `unitrans.data.textfile`).
    """
    text = load_text(path)
    gold: dict[str, set[str]] = {}
    for line_no, line in enumerate(text.lines, start=1):
        fields = split_fields(line)
        if not fields:
            continue
        if len(fields) != 2:
            raise InputError(text.path, line_no, f"expected 'source target', found {len(fields)} fields")
        src, tgt = (f.lower() for f in fields) if lowercase else fields
        gold.setdefault(src, set()).add(tgt)
    if not gold:
        raise InputError(text.path, None, "expected `source target` pairs, found none")
    return gold


@dataclass(frozen=True)
class LexiconScores:
    csls: dict[str, float]
    nn: dict[str, float]
    pairs: int  # dictionary pairs scored
    sources: int  # distinct source words scored

    def to_dict(self) -> dict[str, object]:
        return {"csls": self.csls, "nn": self.nn, "pairs": self.pairs, "sources": self.sources}


def evaluate_lexicon(
    alignment: Alignment,
    gold: dict[str, set[str]],
    *,
    ks: Sequence[int] = (1, 5, 10),
    csls_k: int = 10,
    max_source_rank: int | None = None,
) -> LexiconScores:
    """Precision@k by NN and CSLS on the gold pairs whose both words are in the vocabularies.

    `max_source_rank` keeps only source words among the N most frequent (vocabulary order). A map seeded
    by a user's dictionary is refused: its P@k would measure the dictionary, not the induction.
    """
    if alignment.dictionary_pairs:
        raise UnitransError(
            "no P@k for a dictionary-assisted map: a user's dictionary seeded it (evaluate without one)"
        )
    src_index, tgt_index = alignment.src.index(), alignment.tgt.index()
    rank_limit = max_source_rank or len(src_index)
    rows, wanted = [], []
    for word, translations in gold.items():
        known = {tgt_index[t] for t in translations if t in tgt_index}
        if src_index.get(word, rank_limit) < rank_limit and known:
            rows.append(src_index[word])
            wanted.append(known)
    if not rows:
        raise UnitransError("no dictionary pair has both words in the vocabularies; nothing to evaluate")
    top = max(ks)
    mapped = alignment.mapped_source()
    others = np.setdiff1d(np.arange(len(mapped)), rows)
    queries_first = np.concatenate([mapped[rows], mapped[others]])  # the r terms use every source word
    nb = csls_neighbours(queries_first, alignment.tgt.vectors, k=csls_k, topn=top, queries=len(rows))
    csls_top = nb.indices
    nn_top, _ = cosine_neighbours(mapped[rows], alignment.tgt.vectors, topn=top)

    def precision(ranked: np.ndarray) -> dict[str, float]:
        return {
            f"p@{k}": float(
                np.mean([bool(want & set(r[:k].tolist())) for r, want in zip(ranked, wanted, strict=True)])
            )
            for k in ks
        }

    pairs = sum(len(w) for w in wanted)
    return LexiconScores(precision(csls_top), precision(nn_top), pairs, len(rows))
