"""Label-free check of a student against its teacher on the unlabelled target text (issue 17).

For each finished `unitrans run` folder, decode Θteach's and the student's predictions on D_T (the run's own
sample of `<data>/<lang>/train.txt`, tags unread) with the constrained Viterbi, and print the share of words
tagged as entities, the entity starts and the words per entity. A student whose entities are clearly shorter
than its teacher's is fragmenting them; no target label or score is read.

    python benchmarks/entity_lengths.py --data ../shared/data/conll runs/quick-de runs/quick-es
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from unitrans.data import CONLL_LABELS
from unitrans.model.predict import predict_probs
from unitrans.model.viterbi import decode_tags
from unitrans.pipeline.config import make_config
from unitrans.pipeline.stages import read_target_text


def entity_lengths(model: Path, sentences) -> dict[str, float]:
    tags = decode_tags(predict_probs(model, sentences, progress=False), CONLL_LABELS)
    words = sum(len(t) for t in tags)
    inside = sum(tag != "O" for sent in tags for tag in sent)
    starts = sum(tag.startswith("B-") for sent in tags for tag in sent)
    share = inside / words if words else 0.0  # an empty text has no entities, not a ZeroDivisionError
    return {"entity_words": share, "starts": starts, "words_per_entity": inside / max(starts, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="`unitrans run --out` folders")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/conll"))
    parser.add_argument("--student", default="unitrans", help="The student variant's row.")
    args = parser.parse_args(argv)
    for run in args.runs:
        config = json.loads((run / "config.json").read_text(encoding="utf-8"))
        runs = json.loads((run / "runs.json").read_text(encoding="utf-8"))
        for lang, rows in runs.items():
            settings = {"max_target_sentences": config["max_target_sentences"], "data_dir": args.data}
            run_config = make_config(config["preset"], targets=(lang,), **settings)
            text = read_target_text(run_config, lang).sentences
            for teach, student in zip(rows["teach"], rows[args.student], strict=True):
                t = entity_lengths(Path(teach["model"]), text)
                s = entity_lengths(Path(student["model"]), text)
                per = t["words_per_entity"]
                ratio = s["words_per_entity"] / per - 1 if per else 0.0
                row = {"run": str(run), "lang": lang, "seed": teach["seed"], "teach": t, "student": s}
                print(json.dumps({**row, "student_vs_teach": round(ratio, 4)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
