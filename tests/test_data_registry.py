"""Benchmark registry, `unitrans data check|stats`, and the real originals (slow, skip when absent)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from unitrans.cli import main
from unitrans.data import read_conll, read_conll_file, read_unlabelled
from unitrans.data.registry import (
    EXPECTED_COUNTS,
    available_languages,
    benchmark_split_path,
    check_benchmarks,
    default_data_dir,
    split_stats,
)
from unitrans.errors import UnitransError
from unitrans.eval.metrics import conlleval_entities

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def _fake_data_dir(root: Path) -> Path:
    (root / "xx").mkdir(parents=True)
    shutil.copy(FIXTURES / "conll2003_4col.txt", root / "xx" / "train.txt")
    shutil.copy(FIXTURES / "conll2002_nl_3col.txt", root / "xx" / "test.txt")
    return root


def test_split_path_and_languages(tmp_path):
    root = _fake_data_dir(tmp_path)
    assert benchmark_split_path(root, "xx", "train") == root / "xx" / "train.txt"
    assert available_languages(root) == ["xx"]
    with pytest.raises(UnitransError, match=r"xx/dev.txt: expected the dev split of language 'xx'"):
        benchmark_split_path(root, "xx", "dev")
    with pytest.raises(UnitransError, match="expected a split among train, dev, test"):
        benchmark_split_path(root, "xx", "valid")


def test_default_data_dir_env(monkeypatch, tmp_path):
    monkeypatch.delenv("UNITRANS_DATA_DIR", raising=False)
    assert default_data_dir() == Path("../shared/data/conll")
    monkeypatch.setenv("UNITRANS_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path


def test_split_stats_counts_blocks_and_entities():
    s = split_stats(FIXTURES / "conll2003_4col.txt")
    assert (s.blocks, s.docstart_blocks, s.sentences, s.tokens) == (5, 2, 3, 9)
    assert s.entities == {"LOC": 1, "MISC": 1, "ORG": 1, "PER": 1}


def test_check_reports_missing_and_mismatch(tmp_path, capsys):
    root = tmp_path / "data"
    (root / "en").mkdir(parents=True)
    shutil.copy(FIXTURES / "conll2003_4col.txt", root / "en" / "dev.txt")
    rows = check_benchmarks(root)
    assert len(rows) == 15
    en_dev = next(r for r in rows if (r.lang, r.split) == ("en", "dev"))
    assert en_dev.problems == ["blocks 5 != 3,466", "entities 4 != 5,942"]
    assert main(["data", "check", "--data-dir", str(root)]) == 1
    captured = capsys.readouterr()
    assert "MISMATCH en/dev" in captured.err and "en/train" in captured.err and "missing" in captured.err
    assert "en/dev" in captured.out


def test_check_without_data_folder_is_a_user_error(tmp_path, capsys):
    assert main(["data", "check", "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "expected the benchmark data folder" in capsys.readouterr().err


def test_cli_stats(capsys):
    assert main(["data", "stats", str(FIXTURES / "iob1_3col.txt"), str(FIXTURES / "bioes.txt")]) == 0
    out = capsys.readouterr().out
    assert "IOB1 tags" in out and "BIOES tags" in out


@pytest.mark.slow
def test_real_data_check_passes(conll_data_dir, capsys):
    assert main(["data", "check", "--data-dir", str(conll_data_dir)]) == 0
    out = capsys.readouterr().out
    assert "all 15 splits match" in out
    assert EXPECTED_COUNTS["de"]["dev"].blocks == 3068


@pytest.mark.slow
def test_german_iob1_latin1_original_matches_dev(conll_data_dir):
    original = read_conll_file(conll_data_dir / "originals" / "de_conll2003_iob1_latin1" / "deu.testa")
    assert (original.scheme, original.encoding, original.columns) == ("IOB1", "iso-8859-1", 5)
    assert original.n_blocks == 3068
    dev = read_conll(conll_data_dir / "de" / "dev.txt")
    assert sum(t.startswith("B-") for s in original.sentences for t in s.tags) == 4833
    assert [(s.words, s.tags) for s in original.sentences] == [(s.words, s.tags) for s in dev]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("original", "converted"),
    [
        ("es_conll2002_nltk/esp.train", "es/train.txt"),
        ("es_conll2002_nltk/esp.testa", "es/dev.txt"),
        ("es_conll2002_nltk/esp.testb", "es/test.txt"),
        ("nl_conll2002_nltk/ned.train", "nl/train.txt"),
        ("nl_conll2002_nltk/ned.testa", "nl/dev.txt"),
        ("nl_conll2002_nltk/ned.testb", "nl/test.txt"),
        ("en_conll2003_4col/valid.txt", "en/dev.txt"),
    ],
)
def test_originals_read_as_the_converted_files(conll_data_dir, original, converted):
    """Same sentences and the same entities (conlleval chunks).

    Tags are identical except one: esp.train line 221619 opens a sentence with I-LOC, which
    es/train.txt writes as B-LOC; both read as the same LOC chunk, so the entity lists agree.
    """
    a = read_conll_file(conll_data_dir / "originals" / original)
    b = read_conll_file(conll_data_dir / converted)
    assert a.columns > 2 and a.n_blocks == b.n_blocks
    assert [s.words for s in a.sentences] == [s.words for s in b.sentences]
    assert [conlleval_entities(s.tags) for s in a.sentences] == [
        conlleval_entities(s.tags) for s in b.sentences
    ]
    differing = sum(
        x != y
        for s, t in zip(a.sentences, b.sentences, strict=True)
        for x, y in zip(s.tags, t.tags, strict=True)
    )
    assert differing == (1 if original.endswith("esp.train") else 0)


@pytest.mark.slow
def test_unlabelled_reading_of_real_file_keeps_every_word(conll_data_dir):
    path = conll_data_dir / "nl" / "dev.txt"
    unlabelled = read_unlabelled(path)
    assert all(s.tags is None for s in unlabelled)
    assert [s.words for s in unlabelled] == [s.words for s in read_conll(path)]
