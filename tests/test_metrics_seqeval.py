"""`entity_scores` and `unitrans evaluate` agree exactly with seqeval."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

from unitrans.cli import main
from unitrans.data import read_conll, write_conll
from unitrans.eval.metrics import entity_scores, evaluate_files

FIXTURES = Path(__file__).parent / "fixtures" / "data"
TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
SEQS = st.lists(st.lists(st.sampled_from(TAGS), min_size=1, max_size=10), min_size=1, max_size=6)


def _seqeval_kwargs(mode: str) -> dict:
    return {} if mode == "conlleval" else {"mode": "strict", "scheme": IOB2}


def _assert_agrees(gold, pred, mode: str) -> None:
    kw = _seqeval_kwargs(mode)
    ours = entity_scores(gold, pred, mode=mode)
    assert ours.overall.precision == precision_score(gold, pred, zero_division=0, **kw)
    assert ours.overall.recall == recall_score(gold, pred, zero_division=0, **kw)
    assert ours.overall.f1 == f1_score(gold, pred, zero_division=0, **kw)
    report = classification_report(gold, pred, output_dict=True, zero_division=0, **kw)
    types = {k for k in report if k not in ("micro avg", "macro avg", "weighted avg")}
    assert set(ours.per_type) == types
    for kind, score in ours.per_type.items():
        ref = report[kind]
        assert (score.precision, score.recall, score.f1, score.support) == (
            ref["precision"],
            ref["recall"],
            ref["f1-score"],
            ref["support"],
        )


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # seqeval averages an empty report
@pytest.mark.parametrize("mode", ["conlleval", "strict"])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_random_sequences_agree_with_seqeval(mode, data):
    gold = data.draw(SEQS)
    pred = [data.draw(st.lists(st.sampled_from(TAGS), min_size=len(g), max_size=len(g))) for g in gold]
    _assert_agrees(gold, pred, mode)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_bioes_style_tags_agree_with_seqeval_default_mode(data):
    tags = [*TAGS, "E-PER", "S-PER", "E-LOC", "S-LOC"]
    gold = data.draw(
        st.lists(st.lists(st.sampled_from(tags), min_size=1, max_size=8), min_size=1, max_size=4)
    )
    pred = [data.draw(st.lists(st.sampled_from(tags), min_size=len(g), max_size=len(g))) for g in gold]
    _assert_agrees(gold, pred, "conlleval")


def test_fixture_scores_by_hand():
    conll = evaluate_files(FIXTURES / "eval_gold.txt", FIXTURES / "eval_pred.txt")
    assert (conll.overall.correct, conll.overall.predicted, conll.overall.support) == (4, 5, 5)
    strict = evaluate_files(FIXTURES / "eval_gold.txt", FIXTURES / "eval_pred.txt", mode="strict")
    assert (strict.overall.correct, strict.overall.predicted, strict.overall.support) == (3, 4, 5)
    assert strict.per_type["MISC"].precision == 0.0 and strict.per_type["MISC"].support == 0


def test_cli_json(capsys):
    args = ["evaluate", "--gold", str(FIXTURES / "eval_gold.txt"), "--pred", str(FIXTURES / "eval_pred.txt")]
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["overall"] == {"precision": 0.8, "recall": 0.8, "f1": 0.8000000000000002, "support": 5}
    assert set(out["per_type"]) == {"LOC", "MISC", "ORG", "PER"}
    assert main([*args, "--mode", "strict"]) == 0
    table = capsys.readouterr().out
    assert "found: 4 phrases; correct: 3." in table and "overall" in table


def test_cli_single_conlleval_file(capsys):
    assert main(["evaluate", "--pred", str(FIXTURES / "eval_conlleval_3col.txt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["overall"]["support"] == 5


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("eval_pred_mismatch.txt", "eval_pred_mismatch.txt:10: expected the word 'Mary' as at "),
        ("eval_pred_short.txt", "eval_pred_short.txt:12: expected the word 'Paris' as at "),
    ],
)
def test_cli_token_mismatch_names_first_differing_line(capsys, name, message):
    code = main(["evaluate", "--gold", str(FIXTURES / "eval_gold.txt"), "--pred", str(FIXTURES / name)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_cli_bad_mode(capsys):
    args = ["evaluate", "--pred", str(FIXTURES / "eval_conlleval_3col.txt"), "--mode", "loose"]
    assert main(args) == 2
    assert "expected --mode among conlleval, strict" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["conlleval", "strict"])
def test_real_test_set_agrees_with_seqeval(conll_data_dir, tmp_path, mode):
    """Corrupt 15% of the Spanish test tags at random (I- starts included) and score the file."""
    gold_path = conll_data_dir / "es" / "test.txt"
    sents = read_conll(gold_path)
    rng = random.Random(0)
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
    pred = [[t if rng.random() > 0.15 else rng.choice(labels) for t in s.tags] for s in sents]
    write_conll(tmp_path / "pred.txt", sents, pred)
    ours = evaluate_files(gold_path, tmp_path / "pred.txt", mode=mode, scheme="IOB2")
    gold = [list(s.tags) for s in sents]
    _assert_agrees(gold, pred, mode)
    assert ours.overall.f1 == f1_score(gold, pred, **_seqeval_kwargs(mode))
