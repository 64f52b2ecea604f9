"""Bilingual lexicon induction and word-by-word translation on the real benchmark data.

Measurement only (FreeDict dictionaries never steer any choice): for each target language, derive type
vectors from the English train text and the target train text (labels ignored), align every candidate
layer, report the layer the unsupervised criterion picks and, for reference, P@k of every layer on the
FreeDict test pairs (source words among the 5,000 most frequent, MUSE protocol). Then translate the
English train set with the chosen map and time it.

    python benchmarks/freedict_dictionaries.py --out-dir /tmp/freedict
    flock /tmp/unitrans-heavy.lock python benchmarks/bench_lexicon.py --dicts /tmp/freedict \\
        --out /tmp/bench_lexicon.json > /tmp/bench_lexicon.log 2>&1
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import resource
import sys
import time
from pathlib import Path

from unitrans.data import read_conll, read_unlabelled
from unitrans.translate.alignment import align
from unitrans.translate.encoder_vectors import type_vectors
from unitrans.translate.lexicon import evaluate_lexicon, induce_lexicon, read_dictionary
from unitrans.translate.word_translation import TranslateConfig, translate_sentences, usual_forms


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_language(lang: str, args: argparse.Namespace, config: TranslateConfig) -> dict:
    source = read_conll(args.data / "en" / "train.txt")
    target = read_unlabelled(args.data / lang / "train.txt")
    gold = read_dictionary(args.dicts / f"en-{lang}.txt")
    started = time.perf_counter()
    src_layers = type_vectors([s.unlabelled() for s in source], config.vector_config())
    tgt_layers = type_vectors(target, config.vector_config())
    vectors_s = time.perf_counter() - started
    per_layer = {}
    best = None
    align_s = 0.0
    for layer in src_layers:
        t0 = time.perf_counter()
        alignment = align(src_layers[layer], tgt_layers[layer], config.align_config(), layer=layer)
        align_s += time.perf_counter() - t0
        scores = evaluate_lexicon(alignment, gold, max_source_rank=args.max_source_rank)
        per_layer[layer] = {"criterion": round(alignment.criterion, 5), **scores.to_dict()}
        print(lang, layer, json.dumps(per_layer[layer]), flush=True)
        if best is None or alignment.criterion > best.criterion:
            best = alignment
    assert best is not None
    t0 = time.perf_counter()
    lexicon = induce_lexicon(best, k=config.csls_k)
    induce_s = time.perf_counter() - t0
    results = {}
    for casing in ("source", "target"):
        policy = TranslateConfig(casing=casing)
        t0 = time.perf_counter()
        usual = usual_forms(target, policy.lowercase) if casing == "target" else {}
        sentences, stats = translate_sentences(source, lexicon, policy, usual)
        results[casing] = {
            "seconds": round(time.perf_counter() - t0, 2),
            "stats": dict(stats),
            "sample": [
                " ".join(f"{w}/{t}" if t != "O" else w for w, t in zip(s.words, s.tags or (), strict=True))
                for s, orig in zip(sentences, source, strict=True)
                if 8 <= len(s) <= 20 and orig.words[0] != "-DOCSTART-"
            ][: args.samples],
        }
    return {
        "chosen_layer": best.layer,
        "chosen": per_layer[best.layer],
        "per_layer": per_layer,
        "seed_pairs": best.seed_pairs,
        "history": best.history,
        "vocab": {"source": len(best.src), "target": len(best.tgt)},
        "seconds": {
            "vectors": round(vectors_s, 1),
            "align_all_layers": round(align_s, 1),
            "induce": round(induce_s, 1),
        },
        "translation": results,
        "peak_rss_mib": round(peak_rss_mib()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/conll"))
    parser.add_argument("--dicts", type=Path, required=True, help="Folder of en-<lang>.txt dictionaries.")
    parser.add_argument("--langs", nargs="+", default=["es", "nl", "de", "no"])
    parser.add_argument("--max-source-rank", type=int, default=5000)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = TranslateConfig()
    report = {
        "machine": f"{platform.processor() or platform.machine()}, 2-core CPU",
        "config": config.to_dict(),
    }
    for lang in args.langs:
        report[lang] = run_language(lang, args, config)
        args.out.write_text(
            json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
        )
    for lang in args.langs:
        r = report[lang]
        print(
            f"en-{lang}: layer {r['chosen_layer']} csls {r['chosen']['csls']} nn {r['chosen']['nn']} "
            f"({r['chosen']['sources']} source words)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
