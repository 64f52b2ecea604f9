"""How much weight one word gets in the training loss, with length-bucketed vs random batches.

The loss of a batch is the mean over its words, so a word weighs 1 / (words in its batch). Random batches
of 32 sentences hold similar numbers of words, so every word weighs about the same; length-bucketed
batches (unitrans' default, for speed) put 32 short sentences together, and their words weigh several
times more. English train data only; nothing is trained.

    .venv/bin/python benchmarks/batch_weights.py --data ../shared/data/conll
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/conll"
    )
    parser.add_argument("--encoder", default="me5-small")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    from transformers import AutoTokenizer

    from unitrans.data import read_conll
    from unitrans.model.encoders import resolve_encoder
    from unitrans.model.windows import make_windows
    from unitrans.train.batching import bucketed_batches

    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(args.encoder))
    windows = make_windows(tokenizer, read_conll(args.data / "en" / "train.txt"), 128)
    words = np.array([len(w.positions) for w in windows])
    bucketed = bucketed_batches([len(w) for w in windows], 32, seed=args.seed, epoch=0)
    order = np.random.default_rng(args.seed).permutation(len(windows))
    random = [order[i : i + 32] for i in range(0, len(windows), 32)]
    head = (
        "words per batch: min / p10 / median / p90 / max",
        "word weight ÷ uniform: p10 / median / p90 / max",
    )
    print(f"{'batches':10}{head[0]:>50}{head[1]:>52}")
    for name, batches in (("bucketed", bucketed), ("random", random)):
        per_batch = np.array([words[b].sum() for b in batches])
        weight = np.repeat(1.0 / per_batch, per_batch)
        weight /= weight.mean()
        counts = " / ".join(f"{v:.0f}" for v in np.percentile(per_batch, [0, 10, 50, 90, 100]))
        ratios = " / ".join(f"{v:.2f}" for v in np.percentile(weight, [10, 50, 90, 100]))
        print(f"{name:10}{counts:>50}{ratios:>52}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
