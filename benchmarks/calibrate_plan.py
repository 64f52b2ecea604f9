"""What `REFERENCE_MATMUL_GFLOPS` (pipeline/eta.py) should be, from a finished run on this machine.

`unitrans run --plan` with an empty cache estimates from `REFERENCE_RATES`, scaled by how much slower this
CPU's one-thread matmuls are than the reference machine's. The reference machine's probe cannot be read
any more, so it is inferred where a run has finished: this machine's probe × (the one-core seconds its
stages took ÷ the seconds `REFERENCE_RATES` predict for the same work). Reads the run's config and cache
manifests only; trains nothing. After `make quick`:

    python benchmarks/calibrate_plan.py --out runs/quick
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from unitrans.model import runtime
from unitrans.pipeline import eta, runner
from unitrans.pipeline.cache import StageCache
from unitrans.pipeline.config import make_config
from unitrans.pipeline.graph import planned_stages
from unitrans.pipeline.stages import StageContext


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="a finished run's folder (its config.json)")
    parser.add_argument("--repeats", type=int, default=30, help="matmul probe repetitions (best of)")
    args = parser.parse_args()
    if not (args.out / "config.json").is_file():
        parser.exit(2, f"{args.out}: expected a finished run's folder with config.json\n")
    saved = json.loads((args.out / "config.json").read_text(encoding="utf-8"))
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k != "preset"}
    config = make_config(saved.get("preset", "paper"), **values)
    ctx = StageContext(StageCache(config.cache_root, verify=config.verify), config, False)
    plan = planned_stages(ctx, runner._read_inputs(ctx))
    measured = predicted = 0.0
    for stage in plan:
        rate = eta.REFERENCE_RATES.get(stage.kind)
        if stage.cached and rate is not None and stage.seconds > 0:
            measured += stage.seconds * eta.speedup(stage.cores)
            predicted += rate * stage.work
    if not predicted:
        parser.exit(2, f"{args.out}: expected finished stages with recorded times in its cache\n")
    device = runtime.pick_device(None)
    gflops = runtime.matmul_gflops(runtime.use_bf16(device, None), repeats=args.repeats)
    ratio = measured / predicted
    print(
        f"stages: {measured:.0f} one-core s measured, {predicted:.0f} s at the reference rates "
        f"({ratio:.2f}x); "
        f"matmul probe {gflops:.1f} GFLOP/s; implied reference {gflops * ratio:.0f} GFLOP/s "
        f"(pipeline/eta.py uses {eta.REFERENCE_MATMUL_GFLOPS:.0f})"
    )


if __name__ == "__main__":
    main()
