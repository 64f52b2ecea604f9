"""A user's bilingual dictionary (`--dictionary`, issue 15): parsing, seeding, override, FreeDict."""

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from unitrans.cli import main
from unitrans.data import Sentence
from unitrans.errors import InputError, UnitransError
from unitrans.translate.alignment import AlignConfig, align, identical_seed, procrustes
from unitrans.translate.dictionary import override_lexicon, read_user_dictionary
from unitrans.translate.embeddings import WordEmbeddings
from unitrans.translate.lexicon import Lexicon, evaluate_lexicon, write_lexicon
from unitrans.translate.word_translation import TranslateConfig, translate_sentences

FIXTURES = Path(__file__).parent / "fixtures" / "translate"


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


# --- parsing -------------------------------------------------------------------------------------------


def test_pairs_in_file_order_lowercased_with_comments_blanks_tabs_and_repeats(tmp_path):
    path = write(
        tmp_path / "d.txt",
        "\ufeff# my dictionary\r\nHouse casa\r\n\r\nhouse\thogar\r\n  bank   banco \r\n"
        "house casa\r\nbank orilla\r\n",
    )
    d = read_user_dictionary(path)
    assert d.pairs == (("house", "casa"), ("house", "hogar"), ("bank", "banco"), ("bank", "orilla"))
    assert d.first_targets() == {"house": "casa", "bank": "banco"}  # the first target listed wins
    assert d.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    cased = read_user_dictionary(path, lowercase=False)  # `--cased` lexicons keep the case
    assert cased.pairs[0] == ("House", "casa")


@pytest.mark.parametrize(
    ("text", "line", "found"),
    [
        ("house casa\nthe el la\n", 2, "found 3 fields"),
        ("# ok\nhouse casa\n\nlonely\n", 4, "found 1 field"),
    ],
)
def test_a_bad_line_names_file_and_line(tmp_path, text, line, found):
    path = write(tmp_path / "bad.txt", text)
    with pytest.raises(InputError) as err:
        read_user_dictionary(path)
    assert str(err.value) == f'{path}:{line}: expected "source target", {found}'


@pytest.mark.parametrize("text", ["# only a comment\n\n", "   \n"])
def test_a_dictionary_without_pairs_is_an_error(tmp_path, text):
    with pytest.raises(InputError, match="expected"):
        read_user_dictionary(write(tmp_path / "empty.txt", text))


def test_the_cli_reports_a_bad_dictionary_in_one_line_with_exit_2(tmp_path, capsys):
    bad = write(tmp_path / "bad.txt", "the el\nthe\n")
    code = main(
        ["translate", "--source", str(FIXTURES / "en.conll"), "--target-text", str(FIXTURES / "es.txt"),
         "--out", str(tmp_path / "out.conll"), "--src-emb", str(FIXTURES / "small.vec"),
         "--tgt-emb", str(FIXTURES / "small.vec"), "--dictionary", str(bad)]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f'unitrans: error: {bad}:2: expected "source target", found 1 field']


# --- seeding the map -----------------------------------------------------------------------------------


def rotation(d: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def two_languages(n=300, d=16, shared=1, seed=0):
    """Target = rotated, slightly noisy source; word i is s<i> / t<i>, only `shared` spelled alike."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x @ rotation(d, seed + 1).T + 0.02 * rng.normal(size=(n, d))).astype(np.float32)
    tgt_words = tuple(f"s{i}" if i < shared else f"t{i}" for i in range(n))
    return WordEmbeddings(tuple(f"s{i}" for i in range(n)), x), WordEmbeddings(tgt_words, y)


def test_dictionary_pairs_join_the_identical_strings_in_the_first_solve():
    src, tgt = two_languages(shared=1)
    config = AlignConfig(normalize="", refinement_rounds=0, borrowing_ratio=None)
    with pytest.raises(UnitransError, match="only 1 identical words"):
        align(src, tgt, config)
    words = [("s0", "s0"), ("s5", "t5"), ("s9", "t9"), ("nope", "t3"), ("s7", "t7")]  # s0: identical anyway
    result = align(src, tgt, config, seed_words=words)
    assert result.seed_pairs == 4 and result.dictionary_pairs == 3
    pairs = np.array([[0, 0], [5, 5], [9, 9], [7, 7]])  # identical first, then the dictionary's, deduped
    np.testing.assert_array_equal(identical_seed(src, tgt), pairs[:1])
    np.testing.assert_allclose(result.W, procrustes(src.vectors[pairs[:, 0]], tgt.vectors[pairs[:, 1]]))


def test_a_seeded_map_finds_the_translations_and_is_never_scored():
    src, tgt = two_languages(shared=0)
    words = [(f"s{i}", f"t{i}") for i in range(0, 40, 2)]
    result = align(src, tgt, AlignConfig(normalize="center,renorm", borrowing_ratio=None), seed_words=words)
    nearest = (result.mapped_source() @ result.tgt.vectors.T).argmax(axis=1)
    assert (nearest == np.arange(len(src))).mean() > 0.95
    with pytest.raises(UnitransError, match="no P@k for a dictionary-assisted map"):
        evaluate_lexicon(result, {"s1": {"t1"}})


# --- overriding the lexicon ----------------------------------------------------------------------------

LEXICON = Lexicon(
    source=("the", "house", "bank", "said"),
    target=("el", "edificio", "banco", "dijo"),
    score=np.array([0.9, 0.05, 0.7, 0.6], dtype=np.float32),
)


def test_the_dictionary_overrides_the_words_it_covers_and_casing_follows_the_token(tmp_path):
    d = read_user_dictionary(write(tmp_path / "d.txt", "House casa\nhouse hogar\nbank orilla\nzebra cebra\n"))
    lexicon = override_lexicon(LEXICON, d)
    assert lexicon.target == ("el", "casa", "orilla", "dijo")
    assert lexicon.from_dictionary == {"house", "bank"}  # 'zebra' is not a source word: nothing to do
    assert np.isnan(lexicon.score[[1, 2]]).all() and lexicon.score[0] == np.float32(0.9)
    source = [Sentence(("The", "HOUSE", "said", "House", "bank"), ("O",) * 5)]
    config = TranslateConfig(casing="source", min_csls=0.5)  # 'edificio' (0.05) would have been copied
    out, stats = translate_sentences(source, lexicon, config, {})
    assert out[0].words == ("El", "CASA", "dijo", "Casa", "orilla")
    assert stats["translated_by_dictionary"] == 3 and stats["translated"] == 5
    write_lexicon(tmp_path / "lex.tsv", lexicon)
    rows = (tmp_path / "lex.tsv").read_text(encoding="utf-8").splitlines()
    assert rows == [
        "source\ttarget\tcsls\torigin",
        "the\tel\t0.9000\tinduced",
        "house\tcasa\t\tdictionary",
        "bank\torilla\t\tdictionary",
        "said\tdijo\t0.6000\tinduced",
    ]


def test_without_a_dictionary_the_lexicon_file_is_unchanged(tmp_path):
    write_lexicon(tmp_path / "lex.tsv", LEXICON)
    rows = (tmp_path / "lex.tsv").read_text(encoding="utf-8").splitlines()
    assert rows[:2] == ["source\ttarget\tcsls", "the\tel\t0.9000"]


def test_translate_and_induce_with_vec_files_use_the_dictionary(tmp_path, capsys):
    d = write(tmp_path / "d.txt", "the la\n")  # small.vec: the, city, madrid; 'the' -> 'the' induced
    common = ["--src-emb", str(FIXTURES / "small.vec"), "--tgt-emb", str(FIXTURES / "small.vec")]
    lex = tmp_path / "lex.tsv"
    texts = ["--target-text", str(FIXTURES / "es.txt")]
    assert main(["lexicon", "induce", "--source-text", str(FIXTURES / "en.conll"), *texts,
                 "--out", str(lex), "--dictionary", str(d), *common]) == 0  # fmt: skip
    rows = dict(line.split("\t")[:2] for line in lex.read_text(encoding="utf-8").splitlines()[1:])
    assert rows["the"] == "la" and rows["city"] == "city"
    assert "dictionary-assisted: 1 from the dictionary" in capsys.readouterr().out
    out = tmp_path / "out.conll"
    assert main(["translate", "--source", str(FIXTURES / "en.conll"), *texts,
                 "--out", str(out), "--dictionary", str(d), *common]) == 0  # fmt: skip
    words = [line.split()[0] for line in out.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert "La" in words and "The" not in words
    sidecar = json.loads((tmp_path / "out.conll.json").read_text())
    assert sidecar["stats"]["setting"] == "dictionary-assisted"
    assert sidecar["dictionary"]["sha256"] == hashlib.sha256(d.read_bytes()).hexdigest()
    assert sidecar["stats"]["dictionary_entries"] == 1


# --- FreeDict ------------------------------------------------------------------------------------------


def b64(n: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    out = ""
    while True:
        out = alphabet[n % 64] + out
        n //= 64
        if not n:
            return out


def fake_freedict(folder: Path, entries: list[tuple[str, str]], name: str = "eng-spa") -> None:
    """A dictd index + gzip data file as a FreeDict package installs them (dictzip reads as gzip)."""
    data, index = b"", []
    for head, body in entries:
        raw = body.encode("utf-8")
        index.append(f"{head}\t{b64(len(data))}\t{b64(len(raw))}")
        data += raw
    (folder / f"freedict-{name}.index").write_text("\n".join(index) + "\n", encoding="utf-8")
    (folder / f"freedict-{name}.dict.dz").write_bytes(gzip.compress(data))


ENTRIES = [  # as in freedict-eng-spa: multi-word expressions indexed under their first word
    ("00databaseshort", "00databaseshort\n  English-Spanish FreeDict Dictionary\n"),
    ("The", "The /ðhəg/\nLaHaya\n"),  # The Hague
    ("bank", "bank /bæŋknəut/\nbilletedebanco\n"),  # bank note
    ("bank", "bank /bæŋk/\n1. orilla <fem>, ribera\n2. banco <masc> [fin.]\n"),
    ("house", "house /haʊs/\ncasa <fem>; hogar (home)\n"),
    ("ice cream", "ice cream\nhelado\n"),  # not a single word
    ("the", "the /ð/\nel, la\n"),
]


def test_from_freedict_puts_the_word_itself_first(tmp_path, capsys):
    fake_freedict(tmp_path, ENTRIES)
    out = tmp_path / "en-es.txt"
    assert main(["lexicon", "from-freedict", "dict-freedict-eng-spa", "--dictd-dir", str(tmp_path),
                 "--out", str(out)]) == 0  # fmt: skip
    assert out.read_text(encoding="utf-8").splitlines() == [
        "bank orilla", "bank ribera", "bank banco", "bank billetedebanco",  # shortest pronunciation first
        "house casa", "house hogar",
        "the el", "the la", "the lahaya",  # a capitalised headword last
    ]  # fmt: skip
    assert read_user_dictionary(out).first_targets() == {"bank": "orilla", "house": "casa", "the": "el"}
    assert "3 source words, 9 pairs" in capsys.readouterr().out


def test_from_freedict_errors_are_one_line(tmp_path, capsys):
    assert main(["lexicon", "from-freedict", "eng-xyz", "--dictd-dir", str(tmp_path), "--out", "x"]) == 2
    assert "apt-get install dict-freedict-eng-xyz" in capsys.readouterr().err
    fake_freedict(tmp_path, ENTRIES)
    index = tmp_path / "freedict-eng-spa.index"
    index.write_text(index.read_text() + "broken line\n", encoding="utf-8")
    assert main(["lexicon", "from-freedict", "eng-spa", "--dictd-dir", str(tmp_path), "--out", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"unitrans: error: {index}:8: expected `headword<TAB>offset<TAB>length` (base 64)"]
