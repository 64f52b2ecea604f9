"""Where UniTrans gains or loses, measured after the fact on a finished `unitrans run` cache.

MEASUREMENT ONLY. This script reads the gold labels of the target *train* file, which the pipeline never
reads (it sees that file as unlabelled text D_T). Nothing here may feed back into a setting; it explains
a result, it does not choose one.

For one target language and seed it reports, from the stage cache:
- each teacher's (Θsrc, Θteach, Θtrans) word accuracy and entity F1 (constrained Viterbi, conlleval) on D_T;
- the vote (Eqs. 10-11): coverage, accuracy of the hard labels, and how many gold entity words get one;
- the soft labels: accuracy of Θteach's argmax on the words that got no hard label;
- the test F1 of every evaluated variant;
- with --student, the UniTrans student's accuracy and F1 on D_T too (predicted here, ~80 s on 2 cores).

    .venv/bin/python benchmarks/diagnose_transfer.py --cache ~/.cache/unitrans/pipeline --lang es --seed 42
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from unitrans.data import read_conll
from unitrans.data.schemes import CONLL_LABELS
from unitrans.eval.metrics import entity_scores
from unitrans.model.predict import load_probs
from unitrans.model.viterbi import decode_tags
from unitrans.train.distill import NO_HARD_LABEL


def manifests(cache: Path) -> dict[str, dict]:
    """label -> manifest (with its folder) of every finished stage in the cache."""
    out: dict[str, dict] = {}
    for path in cache.glob("*/*/manifest.json"):
        m = json.loads(path.read_text())
        m["folder"] = path.parent
        out[m.get("label", "")] = m
    return out


def read_votes(folder: Path) -> list[np.ndarray]:
    with np.load(folder / "votes.npz") as data:
        flat, offsets = data["hard"], data["offsets"]
    return [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def diagnose(cache: Path, data_dir: Path, lang: str, seed: int, *, student: bool = False) -> dict:
    found = manifests(cache)
    gold_sents = read_conll(data_dir / lang / "train.txt")
    gold = [list(s.tags or ()) for s in gold_sents]
    label_id = {lab: i for i, lab in enumerate(CONLL_LABELS)}
    gold_ids = np.concatenate([[label_id[t] for t in g] for g in gold])
    report: dict = {"lang": lang, "seed": seed, "d_t_words": int(gold_ids.size), "teachers": {}}
    argmax: dict[str, np.ndarray] = {}
    for kind in ("src", "teach", "trans"):
        m = found.get(f"{lang}: {kind} (seed {seed}) on D_T")
        if m is None:
            continue
        probs, _ = load_probs(m["folder"] / "probs.npz")
        words = sum(len(p) for p in probs)
        if words != gold_ids.size:
            raise SystemExit(f"{kind}: D_T has {words} words, the gold train file {gold_ids.size}")
        argmax[kind] = np.concatenate([p.argmax(-1) for p in probs])
        scores = entity_scores(gold, decode_tags(probs, CONLL_LABELS)).overall
        report["teachers"][kind] = {
            "word_accuracy": round(float((argmax[kind] == gold_ids).mean()), 4),
            "entity_f1": round(scores.f1, 4),
            "precision": round(scores.precision, 4),
            "recall": round(scores.recall, 4),
        }
    m = found.get(f"{lang}: student unitrans (seed {seed})")
    if student and m is not None:
        from unitrans.data import read_unlabelled
        from unitrans.model.predict import predict_probs

        text = [s.unlabelled() for s in read_unlabelled(data_dir / lang / "train.txt")]
        probs = predict_probs(m["folder"] / "model", text, progress=False)
        argmax["student"] = np.concatenate([p.argmax(-1) for p in probs])
        scores = entity_scores(gold, decode_tags(probs, CONLL_LABELS)).overall
        report["student"] = {
            "word_accuracy": round(float((argmax["student"] == gold_ids).mean()), 4),
            "entity_f1": round(scores.f1, 4),
            "precision": round(scores.precision, 4),
            "recall": round(scores.recall, 4),
        }
    m = found.get(f"{lang}: votes (seed {seed})")
    if m is not None:
        hard = np.concatenate(read_votes(m["folder"]))
        has = hard != NO_HARD_LABEL
        entity = gold_ids != label_id["O"]
        hard_entity = has & (hard != label_id["O"])
        report["votes"] = {
            "coverage": round(float(has.mean()), 4),
            "hard_label_accuracy": round(float((hard[has] == gold_ids[has]).mean()), 4),
            "gold_entity_words_with_hard_label": round(float(has[entity].mean()), 4),
            "hard_label_accuracy_on_gold_entity_words": round(
                float((hard[has & entity] == gold_ids[has & entity]).mean()), 4
            ),
            "entity_hard_labels_correct": round(
                float((hard[hard_entity] == gold_ids[hard_entity]).mean()), 4
            ),
        }
        if "teach" in argmax:
            report["votes"]["teach_accuracy_without_hard_label"] = round(
                float((argmax["teach"][~has] == gold_ids[~has]).mean()), 4
            )
    report["test_f1"] = {
        label.split("evaluate ")[1].split(" (seed")[0]: round(m["metrics"]["f1"], 4)
        for label, m in sorted(found.items())
        if label.startswith(f"{lang}: evaluate ") and f"(seed {seed})" in label
    }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True, help="The run's stage cache (--cache-dir).")
    parser.add_argument(
        "--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/conll"
    )
    parser.add_argument("--lang", required=True)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--student", action="store_true", help="Also predict the student on D_T.")
    args = parser.parse_args(argv)
    report = diagnose(args.cache, args.data_dir, args.lang, args.seed, student=args.student)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
