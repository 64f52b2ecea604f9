"""One training on every thread vs trainings side by side on a share of the threads each.

This is the measurement behind `unitrans run`'s `workers` setting (see `unitrans.pipeline.parallel`):
it trains the same tagger (default encoder, paper settings, 1 epoch) on the first N English train
sentences, first alone with all threads, then W copies at once, each in its own process with
threads / W threads, and prints the throughput ratio. Each run has its own output folder, so nothing is
cached between them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def train_once(data: Path, n: int, out: Path, threads: int, seed: int) -> float:
    import torch

    torch.set_num_threads(threads)
    from unitrans.data.conll import read_conll
    from unitrans.train.config import TrainConfig
    from unitrans.train.supervised import train_tagger

    sents = [s for s in read_conll(data / "en" / "train.txt") if s.words[0] != "-DOCSTART-"][:n]
    t0 = time.perf_counter()
    train_tagger(sents, out, TrainConfig(epochs=1, seed=seed), progress=False)
    return time.perf_counter() - t0


def _spawn(args: argparse.Namespace, out: Path, threads: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, __file__, "--child", "--data", str(args.data), "--sentences", str(args.sentences),
           "--threads", str(threads), "--child-out", str(out)]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("UNITRANS_DATA_DIR", "../shared/data/conll"))
    )
    parser.add_argument("--sentences", type=int, default=1200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="Threads in total (default: all cores).")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps({"seconds": train_once(args.data, args.sentences, args.child_out, args.threads, 1)}))
        return
    threads = args.threads or len(os.sched_getaffinity(0))
    per = max(1, threads // args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        alone = _spawn(args, Path(tmp) / "alone", threads)
        alone.communicate()
        alone_wall = time.perf_counter() - started
        started = time.perf_counter()
        procs = [_spawn(args, Path(tmp) / f"w{i}", per) for i in range(args.workers)]
        for p in procs:
            p.communicate()
        side_wall = time.perf_counter() - started
    result = {
        "sentences": args.sentences,
        "alone_threads": threads,
        "alone_seconds": round(alone_wall, 1),
        "workers": args.workers,
        "threads_each": per,
        "side_by_side_seconds": round(side_wall, 1),
        "throughput_ratio": round(args.workers * alone_wall / side_wall, 2),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
