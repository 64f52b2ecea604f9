"""Entity metrics agree with seqeval."""

from __future__ import annotations

import pytest
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

from unitrans.eval.metrics import entity_scores

GOLD = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "I-ORG", "I-ORG", "B-MISC", "I-MISC"]]
PRED = [["B-PER", "I-PER", "O", "I-LOC"], ["O", "B-ORG", "I-ORG", "B-MISC", "B-MISC"]]


@pytest.mark.parametrize("mode", ["conlleval", "strict"])
def test_small_example_agrees_with_seqeval(mode):
    kw = {} if mode == "conlleval" else {"mode": "strict", "scheme": IOB2}
    s = entity_scores(GOLD, PRED, mode=mode)
    assert s.overall.precision == precision_score(GOLD, PRED, **kw)
    assert s.overall.recall == recall_score(GOLD, PRED, **kw)
    assert s.overall.f1 == f1_score(GOLD, PRED, **kw)
    report = classification_report(GOLD, PRED, output_dict=True, zero_division=0, **kw)
    for kind, score in s.per_type.items():
        assert score.f1 == report[kind]["f1-score"]
        assert score.support == report[kind]["support"]


def test_types_only_in_the_predictions_are_scored_with_one_warning(tmp_path, capsys):
    from unitrans.cli import main
    from unitrans.eval.metrics import evaluate_files

    gold, pred = tmp_path / "gold.txt", tmp_path / "pred.txt"
    gold.write_text("John B-PER\nvisited O\nMadrid B-LOC\n")
    pred.write_text("John B-PER\nvisited B-MISC\nMadrid B-FOO\n")
    scores = evaluate_files(gold, pred)
    assert scores.pred_only_types == ("FOO", "MISC")
    assert scores.per_type["MISC"].predicted == 1 and scores.overall.precision == 1 / 3  # still scored
    assert main(["evaluate", "--gold", str(gold), "--pred", str(pred)]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        "unitrans: warning: types FOO, MISC occur only in the predictions, not in the gold file"
    ]
    assert "MISC" in out and "FOO" in out
    assert evaluate_files(gold, gold).pred_only_types == ()
    assert main(["evaluate", "--gold", str(gold), "--pred", str(gold)]) == 0
    assert capsys.readouterr().err == ""
