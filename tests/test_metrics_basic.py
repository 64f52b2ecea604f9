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
