"""Time and peak memory of CSLS translation for a large vocabulary pair (random unit vectors).

flock /tmp/unitrans-heavy.lock python benchmarks/bench_csls.py --n 100000 --dim 384
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np
import torch

from unitrans.translate.csls import csls_neighbours


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="Source and target vocabulary size.")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto")
    parser.add_argument("--block-size", type=int, default=4096)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    src = rng.standard_normal((args.n, args.dim), dtype=np.float32)
    tgt = rng.standard_normal((args.n, args.dim), dtype=np.float32)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    started = time.perf_counter()
    result = csls_neighbours(src, tgt, k=10, topn=1, dtype=dtype, block_size=args.block_size, progress=True)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "n": args.n,
                "dim": args.dim,
                "dtype": args.dtype,
                "threads": torch.get_num_threads(),
                "seconds": round(seconds, 1),
                "peak_rss_mib": round(peak),
                "rss_before_mib": round(before),
                "recomputed_rows": result.recomputed_rows,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
