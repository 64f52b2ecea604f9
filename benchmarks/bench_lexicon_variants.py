"""Do other treatments of the encoder's word vectors translate better? Label-free criterion, P@1 beside it.

Issue 15 asks for CSLS P@1 ≥ 0.60 (FreeDict, English words among the 5,000 most frequent); today's type
vectors give 0.43–0.52. Candidates named in the literature, each aligned exactly as `unitrans` aligns
(identical-string seed, Procrustes, 3 refinements on mutual CSLS neighbours, borrowing filter):

* normalizations, at a given layer: `N0` center + renorm (today's default), `N1` iterative normalization
  (renorm + center five times, then renorm; Zhang et al. 2019), `N2`/`N3`/`N4` all-but-the-top with
  D = 1/3/10 (center, remove each language's top-D principal directions, renorm; Mu & Viswanath 2018);
* layer combinations: `A46`, `A468`, `Aall` the mean of the per-layer normalized vectors of layers 4+6,
  4+6+8 and 4–12, `C612` layers 6 and 12 concatenated;
* `--occurrences N`: type vectors averaged over N contexts instead of 30 (layers 6 and 12 only).

The choice between them would be the criterion's (mutual-CSLS rate among the 10,000 most frequent words,
the one that already picks the layer); FreeDict P@1 is printed beside it and never chooses. E.g.

    python benchmarks/freedict_dictionaries.py --out-dir /tmp/freedict
    python benchmarks/bench_lexicon_variants.py --dicts /tmp/freedict --langs es nl de no --layer 6
    python benchmarks/bench_lexicon_variants.py --dicts /tmp/freedict --langs es --occurrences 100

Type vectors are cached by unitrans ($UNITRANS_CACHE/type-embeddings); one JSON line per (pair, variant).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from unitrans.data import read_conll, read_unlabelled
from unitrans.translate.alignment import AlignConfig, align
from unitrans.translate.embeddings import WordEmbeddings
from unitrans.translate.encoder_vectors import type_vectors
from unitrans.translate.lexicon import evaluate_lexicon, read_dictionary
from unitrans.translate.word_translation import TranslateConfig


def renorm(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def center(v: np.ndarray) -> np.ndarray:
    return v - v.mean(axis=0, keepdims=True)


def all_but_the_top(v: np.ndarray, d: int) -> np.ndarray:
    v = center(v.astype(np.float64))
    top = np.linalg.svd(v, full_matrices=False)[2][:d]
    return renorm((v - (v @ top.T) @ top).astype(np.float32))


def iterative_normalization(v: np.ndarray, rounds: int = 5) -> np.ndarray:
    v = v.astype(np.float32)
    for _ in range(rounds):
        v = center(renorm(v))
    return renorm(v)


def today(v: np.ndarray) -> np.ndarray:
    return renorm(center(v.astype(np.float32)))


NORMALIZATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "N0": today,
    "N1": iterative_normalization,
    "N2": lambda v: all_but_the_top(v, 1),
    "N3": lambda v: all_but_the_top(v, 3),
    "N4": lambda v: all_but_the_top(v, 10),
}
COMBINATIONS: dict[str, tuple[int, ...]] = {"A46": (4, 6), "A468": (4, 6, 8), "Aall": (4, 6, 8, 10, 12)}


def variant(layers: Mapping[int, WordEmbeddings], name: str, layer: int) -> WordEmbeddings:
    """The vectors of one side as variant `name` treats them (already normalized)."""
    base = layers[layer]
    if name in NORMALIZATIONS:
        vectors = NORMALIZATIONS[name](base.vectors)
    elif name == "C612":
        vectors = today(np.concatenate([today(layers[6].vectors), today(layers[12].vectors)], axis=1))
    else:
        vectors = today(np.mean([today(layers[n].vectors) for n in COMBINATIONS[name]], axis=0))
    return WordEmbeddings(base.words, vectors, base.counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/conll"))
    parser.add_argument("--dicts", type=Path, required=True, help="en-LANG.txt test dictionaries")
    parser.add_argument("--langs", nargs="+", default=["es", "nl", "de", "no"])
    parser.add_argument("--layer", type=int, default=6, help="the layer the normalizations are tried at")
    parser.add_argument("--variants", nargs="+", default=[*NORMALIZATIONS, *COMBINATIONS, "C612"])
    parser.add_argument("--occurrences", type=int, default=None, help="only: N contexts per type, N0")
    args = parser.parse_args()
    base = TranslateConfig()
    if args.occurrences is not None:
        base = TranslateConfig(layers=(6, 12), max_occurrences=args.occurrences)
    vector_config = base.vector_config()
    prepared = AlignConfig(
        normalize="",  # each variant normalizes itself
        refinement_rounds=base.refinement_rounds,
        dico_max_rank=base.dico_max_rank,
        csls_k=base.csls_k,
        criterion=base.criterion,
        borrowing_ratio=base.borrowing_ratio,
    )
    source = [s.unlabelled() for s in read_conll(args.data / "en" / "train.txt")]
    src_layers = type_vectors(source, vector_config)
    for lang in args.langs:
        tgt_layers = type_vectors(read_unlabelled(args.data / lang / "train.txt"), vector_config)
        gold = read_dictionary(args.dicts / f"en-{lang}.txt")
        runs = (
            [("N0", layer) for layer in (6, 12)]
            if args.occurrences
            else [(v, args.layer) for v in args.variants]
        )
        for name, layer in runs:
            started = time.perf_counter()
            src, tgt = variant(src_layers, name, layer), variant(tgt_layers, name, layer)
            alignment = align(src, tgt, prepared, layer=layer)
            scores = evaluate_lexicon(alignment, gold, max_source_rank=5000).to_dict()
            record = {
                "pair": f"en-{lang}",
                "variant": name,
                "layer": layer,
                "occurrences": base.max_occurrences,
                "criterion": round(alignment.criterion, 4),
                "csls_p@1": round(scores["csls"]["p@1"], 4),
                "seconds": round(time.perf_counter() - started, 1),
            }
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
