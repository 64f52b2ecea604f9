"""Where a training step's time goes (issue 18 item 4): Θsrc's trainer on the first N English train sentences.

Prints the trainer's own real-subword tokens/s, and with `--profile` torch.profiler's table of operators by
self CPU time. `--dropout bytes` swaps torch's dropout mask (bernoulli) for one drawn as uint8 random bytes
against a threshold, to see whether the mask's random numbers cost throughput (they did not: see
benchmarks/README.md). Run on a quiet machine, under `flock /tmp/unitrans-heavy.lock`:

    python benchmarks/profile_train.py --sentences 640 --profile
    python benchmarks/profile_train.py --sentences 960 --dropout bytes
    python benchmarks/profile_train.py --sentences 960 --processes 2   # two parts of each batch side by side
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI: no busy-waiting on shared cores


def _bytes_dropout(input, p=0.5, training=True, inplace=False):  # F.dropout's signature
    import torch

    if not training or p == 0.0:
        return input
    keep = torch.randint(0, 256, input.shape, dtype=torch.uint8) >= round(p * 256)
    return input * keep.to(input.dtype) * (1.0 / (1.0 - p))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/conll"))
    parser.add_argument("--sentences", type=int, default=640)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--processes", type=int, default=1, help="TrainConfig.processes (batch parts)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--dropout", choices=("torch", "bytes"), default="torch")
    args = parser.parse_args()

    import torch

    from unitrans.data.conll import read_conll
    from unitrans.train.supervised import TrainConfig, train_tagger

    torch.set_num_threads(args.threads)
    if args.dropout == "bytes":
        torch.nn.functional.dropout = _bytes_dropout
        torch.nn.modules.dropout.F.dropout = _bytes_dropout
    sentences = read_conll(args.data_dir / "en" / "train.txt")[: args.sentences]
    config = TrainConfig(encoder="me5-small", epochs=1, seed=42, save_every=10**9, processes=args.processes)
    out = Path(tempfile.mkdtemp(prefix="profile-train-")) / "model"
    try:
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                train_tagger(sentences, out, config, progress=False)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
        else:
            train_tagger(sentences, out, config, progress=False)
        timings = json.loads((out / "unitrans.json").read_text())["timings"]
        run = {"dropout": args.dropout, "threads": args.threads, "processes": args.processes}
        print(json.dumps({**run, **timings}))
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
