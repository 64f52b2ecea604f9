"""Time one target language's translation stage alone (issue 18), on one torch thread as in a pipeline worker.

Calls `unitrans.pipeline.translation.run_translation` with the paper preset's data for `--lang`, word
vectors cached under `--embeddings` (give a folder holding only the English vectors to time the target
side's vector pass too), and compares D_trans and the lexicon byte for byte with a finished translate
stage's folder (`--reference`, e.g. `<cache>/translate/<hash>`) when given:

    flock /tmp/unitrans-heavy.lock .venv/bin/python benchmarks/time_translation.py --lang no \\
        --embeddings /tmp/emb --out /tmp/tt --reference <cache>/translate/<hash>
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI: no busy-waiting on shared cores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lang", required=True)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/conll"))
    parser.add_argument("--embeddings", type=Path, required=True, help="Word-vector cache folder.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--reference", type=Path, help="A translate stage folder to compare with.")
    args = parser.parse_args()

    import torch

    from unitrans.data.conll import read_conll
    from unitrans.pipeline import translation
    from unitrans.pipeline.config import make_config
    from unitrans.pipeline.stages import read_target_text

    torch.set_num_threads(1)
    config = make_config("paper", targets=(args.lang,), data_dir=args.data_dir)
    source = read_conll(args.data_dir / "en" / "train.txt")
    target = read_target_text(config, args.lang).sentences
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    stats = translation.run_translation(source, target, config, out_file=args.out / "dtrans.txt",
                                        lexicon_file=args.out / "lexicon.tsv", cache_dir=args.embeddings,
                                        progress=False)  # fmt: skip
    row = {"lang": args.lang, "seconds": round(time.perf_counter() - started, 1), "layer": stats["layer"]}
    if args.reference is not None:
        for name in ("dtrans.txt", "lexicon.tsv"):
            row[f"{name} identical"] = filecmp.cmp(args.out / name, args.reference / name, shallow=False)
    print(json.dumps(row))


if __name__ == "__main__":
    main()
