"""Time constrained Viterbi over the Spanish test set's real sentence lengths.

Random probabilities (Dirichlet, seed 0) over the 9 CoNLL labels, one matrix per real sentence of
es/test.txt (1,517 sentences, 51,533 words); reports the best of `--repeats` runs of `decode_tags`.

    .venv/bin/python benchmarks/bench_viterbi.py [--data-dir ../shared/data/conll] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from unitrans.data import CONLL_LABELS, read_unlabelled
from unitrans.data.registry import benchmark_split_path, default_data_dir
from unitrans.model.viterbi import decode_tags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--lang", default="es")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    sentences = read_unlabelled(benchmark_split_path(args.data_dir, args.lang, "test"), fmt="conll")
    rng = np.random.default_rng(0)
    probs = [rng.dirichlet(np.ones(len(CONLL_LABELS)), size=len(s)).astype(np.float32) for s in sentences]
    words = sum(len(s) for s in sentences)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        tags = decode_tags(probs, CONLL_LABELS)
        times.append(time.perf_counter() - start)
    assert sum(len(t) for t in tags) == words
    print(
        f"{args.lang}/test: {len(sentences)} sentences, {words} words, longest {max(map(len, sentences))}; "
        f"decode_tags best {min(times):.3f} s, median {sorted(times)[len(times) // 2]:.3f} s "
        f"over {args.repeats} runs (torch {torch.__version__}, {torch.get_num_threads()} threads)"
    )


if __name__ == "__main__":
    main()
