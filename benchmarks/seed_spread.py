"""Θsrc across seeds: unitrans's trainer vs the Hugging Face token-classification recipe.

One seed of a zero-shot cross-lingual score moves by a point or more from seed to seed, so comparing two
recipes on one seed each says little. This script trains Θsrc on the full English train set (paper
settings) with each recipe and each seed, and reports English dev F1 (the only score that may steer a
choice), English test F1 and the target test F1s (conlleval mode, after constrained Viterbi), with mean and
sample standard deviation per recipe.

Recipes (each pins the batching settings, so a recipe name means the same run whatever the defaults):
- `unitrans`: `train_tagger` with today's defaults (bf16 autocast where native, frozen-layer cache,
  length-sorted batches cut at a word budget, every word the same weight, windows instead of truncation).
- `unitrans-batch`: the first defaults: length-sorted batches of 32 sentences, mean loss per batch
  (`batch_by="sentences"`, `loss_weighting="batch"`).
- `unitrans-fp32`: `unitrans-batch` in fp32.
- `unitrans-frozen-dropout`: `unitrans-batch` with dropout inside the frozen layers too, as the HF recipe
  has (so no frozen-layer cache).
- `unitrans-word`: `unitrans-batch` with `loss_weighting="word"`: each batch's mean loss is scaled by its
  share of the words, so every word weighs the same, as with the HF recipe's random batches.
- `unitrans-words-batch`: `word` weighting and `batch_by="words"`: length-sorted batches cut at about
  32 × the mean words per sentence, so each step also sees as many words as a random batch. The same
  settings as `unitrans` since they became the defaults.
- `unitrans-avg-third`, `unitrans-avg-two-thirds`: `unitrans` with the saved weights averaged over the
  last third or two thirds of the steps (`TrainConfig.average_last`). `--recipes unitrans-tails` trains
  `unitrans` once and scores three models from that one run: the last step's weights (`unitrans`) and
  both averages, so the comparison is paired seed by seed.
- `hf`: `AutoModelForTokenClassification` + `Trainer` + `DataCollatorForTokenClassification`, fp32, the
  same hyper-parameters and frozen layers, 128-subword truncation (truncated words are tagged "O").

Runs on whatever device torch finds (a GPU when there is one). Results are rewritten to --out after every
run, so an interrupted call keeps what it finished; each run's word probabilities on every eval set are kept
under --work (`<recipe>-s<seed>/probs/<lang>-<split>.npz`, `unitrans.model.predict.load_probs`), so
per-type scores can be compared afterwards. `--merge` pools the runs of several calls into one table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

EVAL_SETS = ("en/dev", "en/test")
RECIPES = (
    "unitrans",
    "unitrans-batch",
    "unitrans-fp32",
    "unitrans-frozen-dropout",
    "unitrans-word",
    "unitrans-words-batch",
    "unitrans-avg-third",
    "unitrans-avg-two-thirds",
    "hf",
)
# Weight averages kept from one `unitrans` run by `--recipes unitrans-tails` (recipe name -> share of steps).
TAILS = {"unitrans-avg-third": 1 / 3, "unitrans-avg-two-thirds": 2 / 3}


def _keep_probs(folder: Path, name: str, probs, labels) -> None:
    """Keep each eval set's word probabilities, so per-type scores can be compared after the run."""
    from unitrans.model.predict import save_probs

    save_probs(folder / "probs" / f"{name.replace('/', '-')}.npz", probs, labels, dtype=np.float16)


def _f1(gold, probs, labels) -> float:
    from unitrans.eval.metrics import entity_scores
    from unitrans.model.viterbi import decode_tags

    tags = decode_tags(probs, labels)
    return round(100 * entity_scores([s.tags for s in gold], tags, mode="conlleval").overall.f1, 2)


def run_unitrans(args, train, evals, seed: int, recipe: str) -> dict:
    from unitrans.model.predict import model_labels, predict_loaded
    from unitrans.model.tagger import load_tagger
    from unitrans.train.supervised import TrainConfig, train_tagger

    fp32 = recipe == "unitrans-fp32"
    batch_by, weighting = {
        "unitrans": ("words", "word"),
        "unitrans-words-batch": ("words", "word"),
        "unitrans-word": ("sentences", "word"),
    }.get(recipe, ("sentences", "batch"))
    config = TrainConfig(encoder=args.encoder, epochs=args.epochs, seed=seed, bf16=False if fp32 else None,
                         frozen_dropout=recipe == "unitrans-frozen-dropout",
                         loss_weighting=weighting, batch_by=batch_by)  # fmt: skip
    t0 = time.perf_counter()
    folder = train_tagger(train, args.work / f"{recipe}-s{seed}", config,
                          progress=not args.quiet)  # fmt: skip
    train_s = time.perf_counter() - t0
    labels = model_labels(folder)
    tagger, tokenizer = load_tagger(folder)
    f1 = {}
    for name, gold in evals.items():
        probs = predict_loaded(tagger, tokenizer, gold, max_length=config.max_length,
                               bf16=False if fp32 else None, progress=False)  # fmt: skip
        _keep_probs(folder, name, probs, labels)
        f1[name] = _f1(gold, probs, labels)
    return {"train_seconds": round(train_s, 1), "f1": f1}


def run_tails(args, train, evals, seed: int) -> list[dict]:
    """One `unitrans` training; its last-step weights and each tail average scored as separate recipes."""
    from unitrans.model.predict import model_labels, predict_loaded
    from unitrans.model.tagger import load_tagger
    from unitrans.train.averaging import TailAverage
    from unitrans.train.supervised import TrainConfig, train_tagger

    averages: dict[str, TailAverage] = {}

    def keep(done: int, total: int, model) -> None:
        if not averages:
            averages.update({name: TailAverage(model, total, share) for name, share in TAILS.items()})
        for average in averages.values():
            average.update(done)

    config = TrainConfig(encoder=args.encoder, epochs=args.epochs, seed=seed)
    t0 = time.perf_counter()
    folder = train_tagger(train, args.work / f"unitrans-s{seed}", config,
                          progress=not args.quiet, on_step=keep)  # fmt: skip
    train_s = time.perf_counter() - t0
    if not averages:
        raise RuntimeError(f"{folder} was already trained: the averages need a fresh --work folder")
    labels = model_labels(folder)
    runs = []
    for recipe in ("unitrans", *TAILS):
        tagger, tokenizer = load_tagger(folder)
        if recipe in averages:
            averages[recipe].copy_to(tagger)
        f1 = {}
        for name, gold in evals.items():
            probs = predict_loaded(tagger, tokenizer, gold, max_length=config.max_length, progress=False)
            _keep_probs(args.work / f"{recipe}-s{seed}", name, probs, labels)
            f1[name] = _f1(gold, probs, labels)
        runs.append({"recipe": recipe, "seed": seed, "train_seconds": round(train_s, 1), "f1": f1})
    return runs


def run_hf(args, train, evals, seed: int) -> dict:
    import torch
    from hf_recipe import encode, load_frozen, word_probs
    from transformers import DataCollatorForTokenClassification, Trainer, TrainingArguments

    model, tok, labels, label_id = load_frozen(args.encoder, seed)
    steps = math.ceil(len(train) / 32) * args.epochs
    targs = TrainingArguments(
        output_dir=str(args.work / f"hf-s{seed}"),
        per_device_train_batch_size=32,
        per_device_eval_batch_size=32,
        learning_rate=5e-5,
        weight_decay=0.01,
        warmup_steps=math.ceil(0.1 * steps),
        lr_scheduler_type="linear",
        max_grad_norm=1.0,
        num_train_epochs=args.epochs,
        seed=seed,
        save_strategy="no",
        report_to=[],
        logging_strategy="no",
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=args.quiet,
    )
    trainer = Trainer(model=model, args=targs, train_dataset=encode(tok, train, label_id),
                      data_collator=DataCollatorForTokenClassification(tok))  # fmt: skip
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0
    f1 = {}
    for name, gold in evals.items():
        out = trainer.predict(encode(tok, gold, label_id))
        probs = word_probs(out.predictions, out.label_ids, gold, labels)
        _keep_probs(args.work / f"hf-s{seed}", name, probs, labels)
        f1[name] = _f1(gold, probs, labels)
    del trainer, model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {"train_seconds": round(train_s, 1), "f1": f1}


def summarize(runs: list[dict]) -> dict:
    out: dict = {}
    for recipe in dict.fromkeys(r["recipe"] for r in runs):
        mine = [r for r in runs if r["recipe"] == recipe]
        out[recipe] = {"seeds": [r["seed"] for r in mine]}
        for name in mine[0]["f1"]:
            values = [r["f1"][name] for r in mine]
            std = round(statistics.stdev(values), 2) if len(values) > 1 else None
            out[recipe][name] = {"mean": round(statistics.fmean(values), 2), "std": std}
        targets = [n for n in mine[0]["f1"] if not n.startswith("en/")]
        if targets:
            avgs = [statistics.fmean(r["f1"][n] for n in targets) for r in mine]
            std = round(statistics.stdev(avgs), 2) if len(avgs) > 1 else None
            out[recipe]["target_avg"] = {"mean": round(statistics.fmean(avgs), 2), "std": std}
    return out


def print_table(summary: dict) -> None:
    names = [n for n in next(iter(summary.values())) if n != "seeds"]
    print(f"{'recipe':24}" + "".join(f"{n:>15}" for n in names))
    for recipe, row in summary.items():
        cells = []
        for n in names:
            m, s = row[n]["mean"], row[n]["std"]
            cells.append(f"{m:.2f}" + (f" ± {s:.2f}" if s is not None else ""))
        print(f"{recipe:24}" + "".join(f"{c:>15}" for c in cells))


def merge(paths: list[Path]) -> int:
    """Pool runs from several calls (other seeds, other machines) into one table.

    A run is kept once per (recipe, seed, machine); each run's machine is printed so that a table never
    mixes machines silently.
    """
    runs: dict[tuple, dict] = {}
    for path in paths:
        try:
            result = json.loads(path.read_text())
            machine = result["machine"]
            for run in result["runs"]:
                if "error" in run:
                    continue
                if run["recipe"] not in RECIPES:
                    raise ValueError(f"unknown recipe {run['recipe']!r}")
                runs[(run["recipe"], run["seed"], machine)] = {**run, "machine": machine}
        except (OSError, ValueError, KeyError, TypeError) as err:
            print(f"error: {path}: expected a seed_spread.py --out file ({err!r})", file=sys.stderr)
            return 2
    ordered = sorted(runs.values(), key=lambda r: (RECIPES.index(r["recipe"]), r["seed"]))
    for run in ordered:
        targets = [v for n, v in run["f1"].items() if not n.startswith("en/")]
        avg = f"{statistics.fmean(targets):.2f}" if targets else "-"
        print(f"{run['recipe']:24} seed {run['seed']:>3}  {run['machine']:22} "
              + " ".join(f"{n}={v:.2f}" for n, v in run["f1"].items()) + f"  target_avg={avg}")  # fmt: skip
    print_table(summarize(ordered))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(__file__).resolve().parents[2] / "shared/data/conll"
    parser.add_argument("--data", type=Path, default=default_data)
    parser.add_argument("--work", type=Path, default=Path("/tmp/unitrans-seed-spread"))
    parser.add_argument("--out", type=Path, help="Where the results go (JSON, rewritten after each run).")
    parser.add_argument("--encoder", default="me5-small")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--recipes", nargs="+", choices=[*RECIPES, "unitrans-tails"],
                        default=["hf", "unitrans"])  # fmt: skip
    parser.add_argument("--langs", nargs="+", default=["es", "nl", "de", "no"])
    parser.add_argument("--limit", type=int, default=0, help="Use only the first N sentences of each file.")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="Train nothing: pool the runs of earlier --out files and print their table.",
    )
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge)
    if args.out is None:
        parser.error("--out is needed unless --merge is given")

    import torch

    from unitrans.data import read_conll

    def load(name: str):
        sentences = read_conll(args.data / f"{name}.txt")
        return sentences[: args.limit] if args.limit else sentences

    train = load("en/train")
    evals = {name: load(name) for name in (*EVAL_SETS, *(f"{lang}/test" for lang in args.langs))}
    args.work.mkdir(parents=True, exist_ok=True)
    result: dict = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "machine": f"{os.cpu_count()} CPUs, "
        + (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"),
        "torch": torch.__version__,
        "runs": [],
    }
    for seed in args.seeds:  # seed-major, so an interrupted call still has every recipe on some seeds
        for recipe in args.recipes:
            try:
                if recipe == "hf":
                    runs = [{"recipe": recipe, "seed": seed, **run_hf(args, train, evals, seed)}]
                elif recipe == "unitrans-tails":
                    runs = run_tails(args, train, evals, seed)
                else:
                    run = run_unitrans(args, train, evals, seed, recipe)
                    runs = [{"recipe": recipe, "seed": seed, **run}]
            except Exception:  # a benchmark keeps going: the other recipes' runs still count
                runs = [{"recipe": recipe, "seed": seed, "error": traceback.format_exc()}]
            for run in runs:
                result["runs"].append(run)
                print(json.dumps(run), flush=True)
            result["summary"] = summarize([r for r in result["runs"] if "error" not in r])
            tmp = args.out.with_name(args.out.name + ".tmp")
            tmp.write_text(json.dumps(result, indent=2) + "\n")
            tmp.replace(args.out)
    if result.get("summary"):
        print_table(result["summary"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
