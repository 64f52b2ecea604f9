"""Malformed input stops with one line `FILE:LINE: expected ..., found ...` and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from unitrans.cli import main
from unitrans.data import read_conll, read_unlabelled
from unitrans.errors import InputError

FIXTURES = Path(__file__).parent / "fixtures" / "data"


@pytest.mark.parametrize(
    ("name", "kwargs", "pattern"),
    [
        ("empty.txt", {}, r"empty.txt: expected text lines, found an empty file"),
        ("binary.bin", {}, r"binary.bin:1: expected a text file, found binary data"),
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
