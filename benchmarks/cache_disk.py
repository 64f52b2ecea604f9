"""Disk used by a run's stage cache, per stage kind, and what its checkpoints would take as full folders.

Why: compact checkpoints (`unitrans.model.compact`) store only what training changed; this measures how
much that saves on a real cache. A checkpoint's size does not depend on how much data it was trained on,
so a run with the paper preset's structure (every variant, the ensemble's extra teachers, four targets)
on a few hundred sentences has exactly the paper run's checkpoints; only the data-sized stages
(embeddings, probabilities, translations) are smaller, and they are listed apart.

    python benchmarks/cache_disk.py CACHE_DIR [--full-size-of EXPORTED_MODEL_DIR]

`--full-size-of` names a complete (exported) model folder; each checkpoint's full-folder equivalent is
that folder's size (every model of one encoder and label set has the same tensors).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

CHECKPOINT_STAGES = ("model", "student")


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def tally(cache: Path) -> dict[str, dict[str, int]]:
    """{stage kind: {"entries": n, "bytes": b}}: every byte under the kind's folder; entries are the
    finished stages (folders with a manifest), or the files where a kind keeps no manifests (the word
    vectors' own cache)."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"entries": 0, "bytes": 0})
    for stage in sorted(p for p in cache.iterdir() if p.is_dir()):
        finished = [e for e in stage.iterdir() if (e / "manifest.json").is_file()]
        files = [p for p in stage.rglob("*") if p.is_file()]
        out[stage.name]["entries"] = len(finished) if finished else len(files)
        out[stage.name]["bytes"] = folder_bytes(stage)
    return dict(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", type=Path)
    parser.add_argument("--full-size-of", type=Path, help="a complete (exported) model folder")
    args = parser.parse_args()
    rows = tally(args.cache)
    mb = 1e6
    print("| stage kind | entries | MB |\n|---|---|---|")
    for name, row in sorted(rows.items(), key=lambda kv: -kv[1]["bytes"]):
        print(f"| {name} | {row['entries']} | {row['bytes'] / mb:,.1f} |")
    total = sum(r["bytes"] for r in rows.values())
    ckpt = {k: rows[k] for k in CHECKPOINT_STAGES if k in rows}
    n_ckpt = sum(r["entries"] for r in ckpt.values())
    ckpt_bytes = sum(r["bytes"] for r in ckpt.values())
    summary = {"total_mb": total / mb, "checkpoints": n_ckpt, "checkpoint_mb": ckpt_bytes / mb}
    if args.full_size_of:
        full = folder_bytes(args.full_size_of)
        summary |= {
            "full_folder_mb": full / mb,
            "checkpoints_as_full_folders_mb": n_ckpt * full / mb,
            "total_with_full_folders_mb": (total - ckpt_bytes + n_ckpt * full) / mb,
            "checkpoint_ratio": n_ckpt * full / ckpt_bytes if ckpt_bytes else None,
        }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
