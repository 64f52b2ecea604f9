"""Θsrc benchmark: unitrans vs the Hugging Face token-classification recipe, on this machine.

Part a: train Θsrc on the full English train set (paper settings, default encoder), report test F1 on
en/es/nl/de/no (conlleval mode, after constrained Viterbi), training time, subword tokens/s, prediction
words/s and peak memory. `--no-bf16` repeats it in fp32 (for "bf16 must not cost F1").

Part b: train the same model on the same slice (first N English train sentences, 1 epoch) with unitrans
and with `AutoModelForTokenClassification` + `Trainer` + `DataCollatorForTokenClassification` (same
hyper-parameters, same frozen layers, max_length 128 truncation as in the HF examples), then predict the
Spanish test set with both; prints the throughput and prediction-speed ratios side by side. Each side runs
in its own process, so peak memory and thread pools do not mix.

Heavy: run under `flock /tmp/unitrans-heavy.lock`. Results go to --out as JSON. Checkpoints go under
--work; rerunning part a resumes an interrupted training (or reuses a finished one).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# libgomp's default busy-wait makes each OpenMP barrier wait for a descheduled sibling thread when the
# cores are shared: measured here, a training step ran at 140 tok/s with it and 634 tok/s with PASSIVE
# (2 threads, same load). Set before torch starts its thread pool; both sides of part b inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

LANGS = ("en", "es", "nl", "de", "no")


def _peak_mib() -> float:
    from unitrans.model.runtime import peak_memory_mib

    return round(peak_memory_mib(), 1)


def _subwords(tokenizer, sentences, truncate: bool) -> int:
    enc = tokenizer([list(s.words) for s in sentences], is_split_into_words=True, truncation=truncate,
                    max_length=128 if truncate else None)  # fmt: skip
    return sum(len(ids) for ids in enc["input_ids"])


def _es_f1(gold, probs) -> float:
    from unitrans.data import CONLL_LABELS
    from unitrans.eval.metrics import entity_scores
    from unitrans.model.viterbi import decode_tags

    tags = decode_tags(probs, list(CONLL_LABELS))
    return round(100 * entity_scores([s.tags for s in gold], tags, mode="conlleval").overall.f1, 2)


def part_a(args: argparse.Namespace) -> dict:
    import torch

    from unitrans.data import read_conll
    from unitrans.eval.metrics import entity_scores
    from unitrans.model.predict import model_labels, predict_loaded
    from unitrans.model.tagger import load_tagger
    from unitrans.model.viterbi import decode_tags
    from unitrans.train.supervised import TrainConfig, train_tagger

    bf16 = False if args.no_bf16 else None
    train = read_conll(args.data / "en" / "train.txt")
    if args.limit:
        train = train[: args.limit]
    config = TrainConfig(
        encoder=args.encoder,
        epochs=args.epochs,
        seed=args.seed,
        bf16=bf16,
        frozen_dropout=args.frozen_dropout,
    )
    name = "src" + ("-fp32" if args.no_bf16 else "") + ("-frozen-dropout" if args.frozen_dropout else "")
    out_dir = args.work / name
    t0 = time.perf_counter()
    model = train_tagger(train, out_dir, config, progress=not args.quiet)
    wall = time.perf_counter() - t0
    meta = json.loads((model / "unitrans.json").read_text())
    result: dict = {
        "part": "a",
        "bf16": meta["bf16"],
        "frozen_dropout": args.frozen_dropout,
        "encoder": args.encoder,
        "train_sentences": len(train),
        "train_wall_seconds_this_call": round(wall, 1),
        "train_metadata": {k: meta[k] for k in ("timings", "train", "config")},
        "torch_threads": torch.get_num_threads(),
        "test": {},
    }
    labels = model_labels(model)
    tagger, tokenizer = load_tagger(model)  # loaded once; prediction times exclude it, as in part b
    for lang in args.langs:
        gold = read_conll(args.data / lang / "test.txt")
        t = time.perf_counter()
        probs = predict_loaded(
            tagger, tokenizer, gold, max_length=config.max_length, bf16=bf16, progress=not args.quiet
        )
        predict_s = time.perf_counter() - t
        tags = decode_tags(probs, labels)
        scores = entity_scores([s.tags for s in gold], tags, mode="conlleval")
        words = sum(len(s) for s in gold)
        result["test"][lang] = {
            "f1": round(100 * scores.overall.f1, 2),
            "precision": round(100 * scores.overall.precision, 2),
            "recall": round(100 * scores.overall.recall, 2),
            "words": words,
            "predicted_words": int(sum(len(p) for p in probs)),
            "predict_seconds": round(predict_s, 2),
            "predict_words_per_second": round(words / predict_s, 1),
        }
        print(lang, result["test"][lang], flush=True)
    result["peak_memory_mib"] = _peak_mib()
    return result


def part_b_unitrans(args: argparse.Namespace) -> dict:
    from transformers import AutoTokenizer

    from unitrans.data import read_conll
    from unitrans.model.encoders import resolve_encoder
    from unitrans.model.predict import predict_loaded
    from unitrans.model.tagger import load_tagger
    from unitrans.train.supervised import TrainConfig, train_tagger

    train = read_conll(args.data / "en" / "train.txt")[: args.slice]
    test = read_conll(args.data / "es" / "test.txt")
    tok = AutoTokenizer.from_pretrained(resolve_encoder(args.encoder))
    config = TrainConfig(encoder=args.encoder, epochs=1, seed=args.seed, bf16=False if args.no_bf16 else None,
                         freeze_layers=args.freeze_layers, processes=args.processes)  # fmt: skip
    out_dir = args.work / ("slice-unitrans-fp32" if args.no_bf16 else "slice-unitrans")
    if out_dir.exists():
        import shutil

        shutil.rmtree(out_dir)
    t0 = time.perf_counter()
    model = train_tagger(train, out_dir, config, progress=not args.quiet)
    wall = time.perf_counter() - t0
    meta = json.loads((model / "unitrans.json").read_text())
    train_s = meta["timings"]["prepare_seconds"] + meta["timings"]["train_seconds"]
    real = _subwords(tok, train, truncate=False)
    # Timed like the HF side: the model is already in memory (the checkpoint load is not counted), but our
    # tokenization and windowing are (HF's test set is encoded before its clock starts).
    tagger, tagger_tok = load_tagger(model)
    t = time.perf_counter()
    probs = predict_loaded(
        tagger,
        tagger_tok,
        test,
        max_length=config.max_length,
        progress=not args.quiet,
        bf16=False if args.no_bf16 else None,
        processes=args.processes,
    )
    predict_s = time.perf_counter() - t
    return {
        "side": "unitrans-fp32" if args.no_bf16 else "unitrans",
        "es_test_f1": _es_f1(test, probs),
        "train_seconds": round(train_s, 2),
        "train_wall_seconds": round(wall, 2),
        "train_real_tokens": real,
        "train_tokens_per_second": round(real / train_s, 1),
        "predict_seconds": round(predict_s, 2),
        "predict_words": int(sum(len(p) for p in probs)),
        "predict_real_tokens": _subwords(tok, test, truncate=False),
        "predict_words_per_second": round(sum(len(s) for s in test) / predict_s, 1),
        "peak_memory_mib": _peak_mib(),
    }


def part_b_hf(args: argparse.Namespace) -> dict:
    """The Hugging Face token-classification example recipe, frozen like unitrans (embeddings + 3 layers)."""
    from hf_recipe import encode, load_frozen, word_probs
    from transformers import DataCollatorForTokenClassification, Trainer, TrainingArguments

    from unitrans.data import read_conll

    model, tok, labels, label_id = load_frozen(args.encoder, args.seed, args.freeze_layers)
    train = read_conll(args.data / "en" / "train.txt")[: args.slice]
    test = read_conll(args.data / "es" / "test.txt")
    train_ds, test_ds = encode(tok, train, label_id), encode(tok, test, label_id)
    targs = TrainingArguments(
        output_dir=str(args.work / "slice-hf"),
        per_device_train_batch_size=32,
        per_device_eval_batch_size=32,
        learning_rate=5e-5,
        weight_decay=0.01,
        warmup_steps=0.1,  # a float < 1 is a ratio of total steps in transformers 5
        lr_scheduler_type="linear",
        max_grad_norm=1.0,
        num_train_epochs=1,
        seed=args.seed,
        save_strategy="no",
        report_to=[],
        logging_strategy="no",
        use_cpu=True,
        disable_tqdm=args.quiet,
    )
    trainer = Trainer(
        model=model, args=targs, train_dataset=train_ds, data_collator=DataCollatorForTokenClassification(tok)
    )
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0
    real = int(sum(len(x["input_ids"]) for x in train_ds))
    t = time.perf_counter()
    out = trainer.predict(test_ds)
    predict_s = time.perf_counter() - t
    predicted_words = int((np.asarray(out.label_ids) != -100).sum())
    probs = word_probs(out.predictions, out.label_ids, test, labels)
    return {
        "side": "hf_trainer",
        "es_test_f1": _es_f1(test, probs),
        "train_seconds": round(train_s, 2),
        "train_real_tokens": real,
        "train_tokens_per_second": round(real / train_s, 1),
        "predict_seconds": round(predict_s, 2),
        "predict_words": predicted_words,
        "predict_real_tokens": int(sum(len(x["input_ids"]) for x in test_ds)),
        "predict_words_per_second": round(sum(len(s) for s in test) / predict_s, 1),
        "predict_words_lost_to_truncation": sum(len(s) for s in test) - predicted_words,
        "peak_memory_mib": _peak_mib(),
    }


def part_b(args: argparse.Namespace) -> dict:
    sides = {}
    for side, fp32 in (("b-hf", False), ("b-unitrans", False), ("b-unitrans", True)):
        out = args.work / f"{side}{'-fp32' if fp32 else ''}.json"
        cmd = [sys.executable, __file__, "--part", side, "--out", str(out), "--data", str(args.data),
               "--work", str(args.work), "--slice", str(args.slice), "--encoder", args.encoder,
               "--seed", str(args.seed), "--freeze-layers", str(args.freeze_layers),
               "--processes", str(args.processes)]  # fmt: skip
        cmd += (["--no-bf16"] if args.no_bf16 or fp32 else []) + (["--quiet"] if args.quiet else [])
        subprocess.run(cmd, check=True)
        sides[side + ("-fp32" if fp32 else "")] = json.loads(out.read_text())[
            "part_" + side.replace("-", "_")
        ]
    hf, ut = sides["b-hf"], sides["b-unitrans"]
    result = {
        "part": "b",
        "slice_sentences": args.slice,
        "hf_trainer": hf,
        "unitrans": ut,
        "unitrans_fp32": sides["b-unitrans-fp32"],
        "train_throughput_ratio": round(ut["train_tokens_per_second"] / hf["train_tokens_per_second"], 2),
        "predict_speed_ratio_words": round(
            ut["predict_words_per_second"] / hf["predict_words_per_second"], 2
        ),
    }
    print(f"{'':28}{'HF Trainer':>14}{'unitrans':>14}{'ratio':>8}")
    for key, label in (("train_tokens_per_second", "train real tokens/s"),
                       ("predict_words_per_second", "predict words/s (es test)")):  # fmt: skip
        print(f"{label:28}{hf[key]:>14,.0f}{ut[key]:>14,.0f}{ut[key] / hf[key]:>8.2f}")
    fp = sides["b-unitrans-fp32"]
    print(
        f"es test F1: HF {hf['es_test_f1']}, unitrans bf16 {ut['es_test_f1']}, "
        f"unitrans fp32 {fp['es_test_f1']}"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["a", "b", "all", "b-hf", "b-unitrans"], default="all")
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/conll"
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/unitrans-bench-src"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--encoder", default="me5-small")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--slice", type=int, default=2000)
    parser.add_argument("--limit", type=int, default=0, help="Part a: use only the first N train sentences.")
    parser.add_argument("--langs", nargs="+", default=list(LANGS))
    parser.add_argument("--no-bf16", action="store_true")
    parser.add_argument("--freeze-layers", type=int, default=3, help="Part b: frozen layers, both sides.")
    parser.add_argument(
        "--processes", type=int, default=1, help="Part b: unitrans's processes (batch parts, prediction)."
    )
    parser.add_argument(
        "--frozen-dropout",
        action="store_true",
        help="Part a: dropout inside the frozen layers too, as the HF recipe has (no frozen-layer cache).",
    )
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    parts = {"a": [part_a], "b": [part_b], "all": [part_a, part_b], "b-hf": [part_b_hf],
             "b-unitrans": [part_b_unitrans]}[args.part]  # fmt: skip
    results = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{os.cpu_count()} CPUs, {os.uname().machine}",
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average_at_start": os.getloadavg(),
    }
    for part in parts:
        results[part.__name__] = part(args)
    results["load_average_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
