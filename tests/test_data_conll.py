"""Reading and writing CoNLL column files (hand-written fixtures only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from unitrans.data import Sentence, read_conll, read_conll_file, read_unlabelled, write_conll
from unitrans.errors import InputError, UnitransError

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def test_conll2003_docstart_blocks_dropped_and_counted():
    f = read_conll_file(FIXTURES / "conll2003_4col.txt")
    assert [s.words for s in f.sentences] == [
        ("EU", "rejects", "German", "call", "."),
        ("Peter", "Blackburn"),
        ("BRUSSELS", "1996-08-22"),
    ]
    assert f.sentences[0].tags == ("B-ORG", "O", "B-MISC", "O", "O")
    assert f.sentences[0].line == 3
    assert (f.n_blocks, f.n_docstart_blocks, f.columns) == (5, 2, 4)


def test_conll2002_docstart_first_line_of_block_keeps_sentence():
    f = read_conll_file(FIXTURES / "conll2002_nl_3col.txt")
    assert len(f.sentences) == 2 and f.n_blocks == 2 and f.n_docstart_blocks == 0
    assert f.sentences[0].words[0] == "De" and f.sentences[0].line == 2
    assert f.sentences[0].tags[3:6] == ("B-PER", "I-PER", "I-PER")


def test_latin1_fallback_and_tabs():
    f = read_conll_file(FIXTURES / "latin1_tabs.txt")
    assert f.encoding == "iso-8859-1"
    assert f.sentences[0].words[-1] == "Köln"
    assert f.sentences[1] == Sentence(("Müller",), ("B-PER",), 7)


def test_explicit_encoding_that_does_not_fit_is_an_error():
    with pytest.raises(InputError, match=r"latin1_tabs.txt:5: expected utf-8 text"):
        read_conll(FIXTURES / "latin1_tabs.txt", encoding="utf-8")


def test_bom_and_crlf():
    sents = read_conll(FIXTURES / "utf8_bom_crlf.txt")
    assert sents[0].words == ("Juan", "vive", "en", "Málaga")
    assert sents[0].tags == ("B-PER", "O", "O", "B-LOC")
    assert sents[1].words == ("Hola",)


def test_iob1_detected_and_converted():
    f = read_conll_file(FIXTURES / "iob1_3col.txt")
    assert f.scheme == "IOB1"
    assert f.sentences[0].tags == ("O", "B-ORG", "O", "B-ORG", "I-ORG", "O", "B-LOC", "B-LOC")
    assert f.sentences[1].tags == ("B-LOC",)


def test_bioes_detected_and_converted():
    f = read_conll_file(FIXTURES / "bioes.txt")
    assert f.scheme == "BIOES"
    assert f.sentences[0].tags == ("B-PER", "O", "O", "B-LOC", "I-LOC", "O")
    assert f.sentences[1].tags == ("O", "B-ORG", "I-ORG", "I-ORG")


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("bad_columns.txt", r"bad_columns.txt:4: expected 2 columns like line 1, found 1"),
        ("bad_tag_empty_type.txt", r"bad_tag_empty_type.txt:2: expected a tag like O, B-PER or I-LOC.*'B-'"),
        ("bad_tag_prefix.txt", r"bad_tag_prefix.txt:1: expected a tag .*'X-PER'"),
    ],
)
def test_malformed_files_name_file_and_line(name, pattern):
    with pytest.raises(InputError, match=pattern):
        read_conll(FIXTURES / name)


def test_write_read_round_trip(tmp_path):
    sents = read_conll(FIXTURES / "conll2003_4col.txt")
    out = tmp_path / "sub" / "out.txt"
    write_conll(out, sents)
    back = read_conll(out)
    assert [(s.words, s.tags) for s in back] == [(s.words, s.tags) for s in sents]
    assert not list(out.parent.glob(".*tmp"))


def test_unlabelled_formats():
    assert read_unlabelled(FIXTURES / "tokens.txt")[0].words == ("Juan", "vive", "en", "Madrid")
    plain = read_unlabelled(FIXTURES / "plain.txt")
    assert [s.words for s in plain] == [("Juan", "vive", "en", "Madrid", "."), ("Hola", ",", "mundo")]
    conll = read_unlabelled(FIXTURES / "conll2003_4col.txt")
    assert [s.tags for s in conll] == [None, None, None]
    assert conll[1].words == ("Peter", "Blackburn")


def test_tag_column_selectable(tmp_path):
    path = tmp_path / "multi.txt"
    path.write_text("Jan B-PER NNP O\nleeft O VBZ O\n")
    assert read_conll(path, tag_column=1)[0].tags == ("B-PER", "O")
    assert read_conll(path)[0].tags == ("O", "O")


def test_no_break_space_inside_a_word_is_not_a_separator(tmp_path):
    path = tmp_path / "nbsp.txt"
    path.write_text("10\u00a0000 O\neuros O\n", encoding="utf-8")
    assert read_conll(path)[0].words == ("10\u00a0000", "euros")


def test_unlabelled_auto_treats_non_tag_columns_as_text(tmp_path):
    path = tmp_path / "two_words.txt"
    path.write_text("hola mundo\nbuenos días\n", encoding="utf-8")
    assert [s.words for s in read_unlabelled(path)] == [("hola", "mundo"), ("buenos", "días")]


def test_write_predicted_tags_with_gold(tmp_path):
    sents = read_conll(FIXTURES / "conll2002_nl_3col.txt")
    pred = [["O"] * len(s) for s in sents]
    write_conll(tmp_path / "p.txt", sents, pred, keep_gold=True)
    lines = (tmp_path / "p.txt").read_text().splitlines()
    assert lines[3] == "Jan B-PER O"
    assert [s.tags for s in read_conll(tmp_path / "p.txt", tag_column=1)] == [s.tags for s in sents]


def test_writer_refuses_what_it_could_not_read_back(tmp_path):
    with pytest.raises(UnitransError, match="expected a word without spaces"):
        write_conll(tmp_path / "x.txt", [Sentence(("New York",), ("B-LOC",))])
    with pytest.raises(UnitransError, match="expected a tag like O, B-PER or I-LOC, found 'B-'"):
        write_conll(tmp_path / "x.txt", [Sentence(("York",), ("B-",))])
    assert not (tmp_path / "x.txt").exists()
