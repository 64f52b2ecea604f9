"""Malformed input stops with one line `FILE:LINE: expected ..., found ...` and exit code 2."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from unitrans.cli import main
from unitrans.data import Sentence, read_conll, read_unlabelled, write_conll
from unitrans.data.conll import split_columns
from unitrans.data.textfile import load_text
from unitrans.errors import InputError

FIXTURES = Path(__file__).parent / "fixtures" / "data"


@pytest.mark.parametrize(
    ("name", "kwargs", "pattern"),
    [
        ("empty.txt", {}, r"empty.txt: expected text lines, found an empty file"),
        ("binary.bin", {}, r"binary.bin: binary file \(NUL bytes\), expected text"),
        ("no_such_file.txt", {}, r"no_such_file.txt: expected an existing file, found no such file"),
        ("iob2_with_e_tag.txt", {"scheme": "IOB2"}, r"iob2_with_e_tag.txt:2: expected an IOB2 tag .*'E-PER'"),
        ("conll2003_4col.txt", {"tag_column": 0}, r"conll2003_4col.txt:3: expected tag column 0"),
        ("conll2003_4col.txt", {"tag_column": 7}, r"conll2003_4col.txt:3: expected tag column 7"),
        ("tokens.txt", {}, r"tokens.txt:1: expected at least 2 columns"),
        ("conll2003_4col.txt", {"encoding": "no-such-codec"}, r"expected a known text encoding"),
    ],
)
def test_read_conll_errors(name, kwargs, pattern):
    with pytest.raises(InputError, match=pattern):
        read_conll(FIXTURES / name, **kwargs)


def test_directory_is_an_error(tmp_path):
    with pytest.raises(InputError, match="expected a file, found a directory"):
        read_conll(tmp_path)


def test_unlabelled_errors():
    with pytest.raises(InputError, match="empty file"):
        read_unlabelled(FIXTURES / "empty.txt")
    with pytest.raises(InputError, match=r"conll2003_4col.txt:3: expected one token per line, found 4"):
        read_unlabelled(FIXTURES / "conll2003_4col.txt", fmt="tokens")


def test_docstart_only_file_is_an_error(tmp_path):
    path = tmp_path / "doc.txt"
    path.write_text("-DOCSTART- O\n\n")
    with pytest.raises(InputError, match="found only -DOCSTART- and blank lines"):
        read_conll(path)


def test_cli_prints_one_line_and_exits_2(capsys):
    code = main(["data", "stats", str(FIXTURES / "bad_tag_prefix.txt")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [
        f"unitrans: error: {FIXTURES / 'bad_tag_prefix.txt'}:1: "
        "expected a tag like O, B-PER or I-LOC in column 2, found 'X-PER'"
    ]
    assert "Traceback" not in err


def test_cli_missing_file(capsys):
    assert main(["data", "stats", str(FIXTURES / "missing.txt")]) == 2
    assert "missing.txt: expected an existing file" in capsys.readouterr().err


def test_symlink_loop_is_named_as_such(tmp_path, capsys):
    os.symlink(tmp_path / "b.txt", tmp_path / "a.txt")
    os.symlink(tmp_path / "a.txt", tmp_path / "b.txt")
    with pytest.raises(InputError, match=r"a.txt: expected a file, found a symlink loop"):
        read_conll(tmp_path / "a.txt")
    assert main(["data", "stats", str(tmp_path / "a.txt")]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"unitrans: error: {tmp_path / 'a.txt'}: expected a file, found a symlink loop "
        "(too many levels of symbolic links)"
    ]


def test_broken_symlink_and_path_through_a_file(tmp_path):
    os.symlink(tmp_path / "gone.txt", tmp_path / "link.txt")
    with pytest.raises(
        InputError, match=r"link.txt: expected an existing file, found a broken symbolic link"
    ):
        read_unlabelled(tmp_path / "link.txt")
    (tmp_path / "f.txt").write_text("a O\n")
    with pytest.raises(InputError, match="found a path through a file"):
        read_conll(tmp_path / "f.txt" / "x.txt")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without read permission")
def test_unreadable_file(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text("a O\n")
    path.chmod(0)
    with pytest.raises(InputError, match=r"secret.txt: expected a readable file, found permission denied"):
        read_conll(path)


# -DOCSTART-: only a line that IS a document marker may be skipped; every other word is kept.


def test_plain_text_line_starting_with_docstart_keeps_its_words(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("-DOCSTART- Madrid is nice\n-DOCSTART-\nJuan vive en Madrid\n")
    sentences = read_unlabelled(path)
    assert [s.words for s in sentences] == [
        ("-DOCSTART-", "Madrid", "is", "nice"),
        ("Juan", "vive", "en", "Madrid"),
    ]
    assert [s.line for s in sentences] == [1, 3]
    assert [s.words for s in read_unlabelled(path, fmt="text")] == [s.words for s in sentences]


@pytest.mark.parametrize(
    "marker", ["-DOCSTART-", "-DOCSTART- O", "-DOCSTART- -X- -X- O", "-DOCSTART- -DOCSTART- O"]
)
def test_document_markers_are_skipped_in_column_files(tmp_path, marker):
    path = tmp_path / "doc.txt"
    path.write_text(f"{marker}\n\nJohn B-PER\nvisited O\n\n{marker}\nMadrid B-LOC\n")
    assert [s.words for s in read_conll(path)] == [("John", "visited"), ("Madrid",)]
    assert [s.words for s in read_unlabelled(path)] == [("John", "visited"), ("Madrid",)]
    assert split_columns(load_text(path)).n_docstart_blocks == 1


def test_docstart_with_words_in_a_column_file_is_not_dropped(tmp_path):
    path = tmp_path / "doc.txt"
    path.write_text("John B-PER\n-DOCSTART- B-PER\n\nMadrid B-LOC\n")
    assert [s.words for s in read_conll(path)] == [("John", "-DOCSTART-"), ("Madrid",)]
    path.write_text("John B-PER\n-DOCSTART- O\nsaid O\n")  # mid-sentence: a word, not a marker
    assert [s.words for s in read_conll(path)] == [("John", "-DOCSTART-", "said")]
    assert [s.words for s in read_unlabelled(path)] == [("John", "-DOCSTART-", "said")]
    path.write_text("-DOCSTART- Madrid is nice\nJohn B-PER\n")
    with pytest.raises(InputError, match=r"doc.txt:2: expected 4 columns like line 1, found 2"):
        read_conll(path)


def test_every_word_of_every_reader_path_is_kept(tmp_path):
    """Each format's reader returns exactly the words of the file, docstart-looking words included."""
    files = {
        "text": ("-DOCSTART- a b\nc -DOCSTART-\n", ["-DOCSTART-", "a", "b", "c", "-DOCSTART-"]),
        "tokens": ("-DOCSTART-\n\na\n-DOCSTART-x\n\nb\n", ["a", "-DOCSTART-x", "b"]),
        "conll": ("-DOCSTART- O\n\na O\n-DOCSTART- B-PER\n", ["a", "-DOCSTART-"]),
    }
    for fmt, (content, words) in files.items():
        path = tmp_path / f"{fmt}.txt"
        path.write_text(content)
        assert [w for s in read_unlabelled(path, fmt=fmt) for w in s.words] == words, fmt
        assert [w for s in read_unlabelled(path) for w in s.words] == words, fmt


def test_write_conll_respects_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_conll(tmp_path / "out.txt", [Sentence(("a", "b"), ("O", "B-PER"))])
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.txt").stat().st_mode) == 0o644
    assert (tmp_path / "out.txt").read_text() == "a O\nb B-PER\n\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary file left behind


def test_unreadable_file_message_even_under_root(tmp_path, monkeypatch):
    import errno

    path = tmp_path / "secret.txt"
    path.write_text("a O\n")

    def denied(self):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(InputError, match=r"secret.txt: expected a readable file, found permission denied"):
        read_unlabelled(path)


def test_benchmark_split_that_is_a_symlink_loop_is_named_as_such(tmp_path):
    from unitrans.data.registry import benchmark_split_path
    from unitrans.errors import UnitransError

    (tmp_path / "es").mkdir()
    os.symlink(tmp_path / "es" / "test.txt", tmp_path / "es" / "test.txt")
    with pytest.raises(UnitransError, match=r"test.txt: expected the test split .* found a symlink loop"):
        benchmark_split_path(tmp_path, "es", "test")
    with pytest.raises(UnitransError, match=r"train.txt: expected the train split .* found no such file"):
        benchmark_split_path(tmp_path, "es", "train")
