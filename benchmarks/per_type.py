"""Per-type conlleval scores of kept probabilities or of a model, on one labelled file.

`seed_spread.py` keeps every run's word probabilities (`<work>/<recipe>-s<seed>/probs/*.npz`), the HF
recipe's included, whose model is not saved; this script decodes them (constrained Viterbi) and prints
precision, recall and F1 per entity type, so two recipes can be compared type by type. Given a model
folder it predicts first (`--fp32` turns bf16 autocast off, to check what bf16 prediction costs).

    PYTHONPATH=src .venv/bin/python benchmarks/per_type.py ../shared/data/conll/no/test.txt \
        /tmp/ss-hf4/hf-s4/probs/no-test.npz /tmp/ss-u3/unitrans-s3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gold", type=Path, help="Labelled CoNLL file the probabilities belong to.")
    parser.add_argument("sources", type=Path, nargs="+", help="Probability files (.npz) or model folders.")
    parser.add_argument("--fp32", action="store_true", help="Predict model folders without bf16.")
    args = parser.parse_args(argv)

    from unitrans.data import read_conll
    from unitrans.errors import UnitransError
    from unitrans.eval.metrics import entity_scores
    from unitrans.model.predict import load_probs, model_labels, predict_probs
    from unitrans.model.viterbi import decode_tags

    try:
        gold = read_conll(args.gold)
    except UnitransError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for source in args.sources:
        if source.suffix == ".npz":
            probs, labels = load_probs(source)
        else:
            probs = predict_probs(source, gold, bf16=False if args.fp32 else None, progress=False)
            labels = model_labels(source)
        if len(probs) != len(gold):
            print(f"error: {source}: {len(probs)} sentences, {args.gold} has {len(gold)}", file=sys.stderr)
            return 2
        scores = entity_scores([s.tags for s in gold], decode_tags(probs, labels), mode="conlleval")
        print(f"{source}: overall F1 {100 * scores.overall.f1:.2f}")
        print(scores.format_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
