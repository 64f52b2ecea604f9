"""Property tests: write/read round trips and scheme conversions (hypothesis)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from unitrans.data import Sentence, read_conll, read_conll_file, write_conll
from unitrans.data.schemes import detect_scheme, iob2_to_bioes, strict_entities, to_iob2

TYPES = ("PER", "LOC", "ORG")
WORD = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Cc")), min_size=1, max_size=6)


@st.composite
def valid_iob2(draw, max_len: int = 12) -> list[str]:
    n = draw(st.integers(1, max_len))
    tags: list[str] = []
    for _ in range(n):
        prev = tags[-1] if tags else "O"
        options = ["O", *(f"B-{t}" for t in TYPES)] + ([f"I-{prev[2:]}"] if prev != "O" else [])
        tags.append(draw(st.sampled_from(options)))
    return tags


@st.composite
def labelled_sentences(draw) -> list[Sentence]:
    sents = []
    for _ in range(draw(st.integers(1, 4))):
        tags = draw(valid_iob2())
        words = draw(st.lists(WORD, min_size=len(tags), max_size=len(tags)))
        if words[0] == "-DOCSTART-":
            words[0] = "x"
        sents.append(Sentence(tuple(words), tuple(tags)))
    return sents


@settings(max_examples=60, deadline=None)
@given(labelled_sentences())
def test_write_then_read_round_trips(sents):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.txt"
        write_conll(path, sents)
        back = read_conll(path, scheme="IOB2")
    assert [(s.words, s.tags) for s in back] == [(s.words, s.tags) for s in sents]


@settings(max_examples=200, deadline=None)
@given(valid_iob2())
def test_bioes_round_trip_keeps_entities(tags):
    bioes = iob2_to_bioes(tags)
    assert to_iob2(bioes, "BIOES") == tags
    if any(t[0] in "ES" for t in bioes):
        assert detect_scheme([bioes]) == "BIOES"


def _to_iob1(tags: list[str]) -> list[str]:
    """IOB2 -> IOB1: B- only where an entity directly follows one of the same type."""
    out = []
    for i, tag in enumerate(tags):
        if tag.startswith("B-"):
            prev = tags[i - 1] if i else "O"
            same_before = prev != "O" and prev[2:] == tag[2:]
            out.append(tag if same_before else "I-" + tag[2:])
        else:
            out.append(tag)
    return out


@settings(max_examples=200, deadline=None)
@given(valid_iob2())
def test_iob1_conversion_restores_iob2(tags):
    assert to_iob2(_to_iob1(tags), "IOB1") == tags
    assert strict_entities(to_iob2(_to_iob1(tags), "IOB1")) == strict_entities(tags)


def test_iob1_file_detected(tmp_path):
    path = tmp_path / "iob1.txt"
    path.write_text("a I-PER\nb I-PER\nc B-PER\nd O\ne I-LOC\n")
    f = read_conll_file(path)
    assert f.scheme == "IOB1"
    assert f.sentences[0].tags == ("B-PER", "I-PER", "B-PER", "O", "B-LOC")
