"""Which encoder's word vectors to translate with, decided without labels (issue 14 item 4).

For each encoder, derive type vectors from the same English and target texts (labels ignored, the first
`--sentences` of each train file), align every candidate layer as the lexicon stage does
(`alignment.align`, default `TranslateConfig`), and report the label-free criterion of each layer and of
the layer it picks. The encoder with the higher criterion is the one to use. With `--dicts`, CSLS/NN P@k
on FreeDict test pairs (source words among the 5,000 most frequent, as in bench_lexicon.py) are recorded
beside it, for the record only: they never steer a choice.

    python benchmarks/freedict_dictionaries.py --out-dir /tmp/freedict --langs es
    flock /tmp/unitrans-heavy.lock nice -n 10 python benchmarks/bench_lexicon_encoders.py \\
        --sentences 2000 --dicts /tmp/freedict --out /tmp/bench_lexicon_encoders.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import sys
import time
from pathlib import Path

from unitrans.data import read_conll
from unitrans.translate.alignment import align
from unitrans.translate.encoder_vectors import type_vectors
from unitrans.translate.lexicon import evaluate_lexicon, read_dictionary
from unitrans.translate.word_translation import TranslateConfig


def run_encoder(encoder: str, source, target, gold, args: argparse.Namespace) -> dict:
    config = TranslateConfig(encoder=encoder)
    started = time.perf_counter()
    src_layers = type_vectors(source, config.vector_config(), progress=False)
    tgt_layers = type_vectors(target, config.vector_config(), progress=False)
    vectors_s = time.perf_counter() - started
    t0 = time.perf_counter()
    per_layer, best = {}, None
    for layer in src_layers:
        alignment = align(src_layers[layer], tgt_layers[layer], config.align_config(), layer=layer)
        per_layer[layer] = {"criterion": round(alignment.criterion, 5), "seed_pairs": alignment.seed_pairs}
        if gold is not None:  # recorded only; the choice below reads the criterion alone
            scores = evaluate_lexicon(alignment, gold, max_source_rank=args.max_source_rank)
            per_layer[layer].update(scores.to_dict())
        print(encoder, layer, json.dumps(per_layer[layer]), flush=True)
        if best is None or alignment.criterion > best.criterion:
            best = alignment
    assert best is not None
    return {
        "chosen_layer": best.layer,
        "criterion": round(best.criterion, 5),
        "chosen": per_layer[best.layer],
        "per_layer": per_layer,
        "vocab": {"source": len(best.src), "target": len(best.tgt)},
        "seconds": {"vectors": round(vectors_s, 1), "align_all_layers": round(time.perf_counter() - t0, 1)},
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/conll"))
    parser.add_argument("--lang", default="es")
    parser.add_argument("--encoders", nargs="+", default=["me5-small", "embeddinggemma-300m"])
    parser.add_argument("--sentences", type=int, default=2000, help="First N per side (0: all).")
    parser.add_argument("--dicts", type=Path, help="Folder of en-<lang>.txt (FreeDict), for the record only.")
    parser.add_argument("--max-source-rank", type=int, default=5000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    limit = args.sentences or None
    source = [s.unlabelled() for s in read_conll(args.data / "en" / "train.txt")][:limit]
    target = [s.unlabelled() for s in read_conll(args.data / args.lang / "train.txt")][:limit]
    gold = read_dictionary(args.dicts / f"en-{args.lang}.txt") if args.dicts else None
    report: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()}-core CPU",
        "pair": f"en-{args.lang}",
        "sentences": {"source": len(source), "target": len(target)},
        "config": TranslateConfig().to_dict(),
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }
    for encoder in args.encoders:
        report[encoder] = run_encoder(encoder, source, target, gold, args)
        report["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    report["pick"] = max(args.encoders, key=lambda e: report[e]["criterion"])
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for encoder in args.encoders:
        r = report[encoder]
        extra = f" csls {r['chosen']['csls']}" if gold is not None else ""
        print(f"{encoder}: layer {r['chosen_layer']} criterion {r['criterion']}{extra} {r['seconds']}")
    print(f"label-free pick: {report['pick']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
