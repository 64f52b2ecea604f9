"""How input bytes become text: UTF-8, ISO-8859-1, byte-order marks, line ends, and what is refused.

A file is UTF-8 when it decodes as UTF-8; ISO-8859-1 when it has invalid UTF-8 bytes and no valid
multi-byte sequence; an error naming the first bad line when it has both (decoding it either way would
corrupt some lines); an error when it holds NUL bytes (binary).
"""

from __future__ import annotations

import codecs

import pytest

from unitrans.cli import main
from unitrans.data import read_conll, read_conll_file, read_unlabelled
from unitrans.data.textfile import load_text
from unitrans.errors import InputError

MIXED_MESSAGE = "not valid UTF-8, while other lines are (mixed encodings); convert the file to UTF-8"


def _write(tmp_path, data: bytes, name: str = "in.txt"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_utf8_file_is_utf8(tmp_path):
    f = read_conll_file(_write(tmp_path, "España B-LOC\nvisitó O\n".encode()))
    assert f.encoding == "utf-8" and f.sentences[0].words == ("España", "visitó")


def test_latin1_file_without_utf8_sequences_is_latin1(tmp_path):
    f = read_conll_file(_write(tmp_path, "España B-LOC\nvisitó O\n".encode("latin-1")))
    assert f.encoding == "iso-8859-1" and f.sentences[0].words == ("España", "visitó")


@pytest.mark.parametrize(
    ("data", "line"),
    [
        ("España B-LOC\n".encode() + "España B-LOC\n".encode("latin-1"), 2),
        (b"Madrid B-LOC\n" + "España B-LOC\n".encode("latin-1") + "España B-LOC\n".encode(), 2),
        ("a O\n\nEspaña B-LOC\n".encode() + b"b O\n" + "José B-PER\n".encode("cp1252"), 5),
        ("España B-LOC\r\n".encode() + "José B-PER\r\n".encode("latin-1"), 2),
        ("España B-LOC\r".encode() + "José B-PER\r".encode("latin-1"), 2),
    ],
    ids=["utf8-then-latin1", "latin1-then-utf8", "blank-lines-counted", "crlf", "cr-only"],
)
def test_mixed_encodings_name_the_first_bad_line(tmp_path, data, line):
    path = _write(tmp_path, data)
    with pytest.raises(InputError, match="mixed encodings") as err:
        load_text(path)
    assert str(err.value) == f"{path}:{line}: {MIXED_MESSAGE}"


def test_an_explicit_encoding_overrides_the_detection(tmp_path):
    path = _write(tmp_path, "España B-LOC\n".encode() + "José B-PER\n".encode("latin-1"))
    assert read_conll(path, encoding="latin-1")[0].words == ("EspaÃ±a", "José")  # what the user asked


def test_utf8_bom_then_latin1_is_an_error(tmp_path):
    path = _write(tmp_path, codecs.BOM_UTF8 + b"ok O\nEspa\xf1a B-LOC\n")
    with pytest.raises(InputError, match=r"in.txt:2: expected utf-8-sig text after its byte-order mark"):
        load_text(path)


@pytest.mark.parametrize(
    "data",
    [b"John B-PER\x00\n", "John B-PER\n".encode("utf-16-le"), b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"],
    ids=["nul-byte", "utf16-without-bom", "png"],
)
def test_nul_bytes_mean_a_binary_file(tmp_path, data):
    path = _write(tmp_path, data)
    with pytest.raises(InputError) as err:
        load_text(path)
    assert str(err.value) == f"{path}: binary file (NUL bytes), expected text"


def test_utf16_with_bom_is_read_and_invalid_utf16_is_refused(tmp_path):
    good = _write(tmp_path, codecs.BOM_UTF16_LE + "España B-LOC\n".encode("utf-16-le"), "good.txt")
    assert read_conll(good)[0].words == ("España",)
    bad = _write(
        tmp_path, codecs.BOM_UTF16_LE + "a O\nb O\n".encode("utf-16-le") + b"\x00\xd8c\x00", "bad.txt"
    )
    with pytest.raises(InputError, match=r"bad.txt:3: expected utf-16 text after its byte-order mark"):
        load_text(bad)


@pytest.mark.parametrize("data", [b"", b"\n \n\t\n", codecs.BOM_UTF8, codecs.BOM_UTF8 + b"\r\n"])
def test_empty_files_are_refused(tmp_path, data):
    with pytest.raises(InputError, match="expected text lines, found an empty file"):
        load_text(_write(tmp_path, data))


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"])
def test_line_ends_lf_crlf_and_cr_only_read_alike(tmp_path, end):
    text = end.join(["John B-PER", "visited O", "", "Madrid B-LOC", ""])
    path = _write(tmp_path, text.encode())
    assert load_text(path).lines == ["John B-PER", "visited O", "", "Madrid B-LOC"]
    assert [s.words for s in read_conll(path)] == [("John", "visited"), ("Madrid",)]
    assert [s.line for s in read_conll(path)] == [1, 4]


def test_next_line_character_of_latin1_text_is_no_line_end(tmp_path):
    """0x85 is `…` in cp1252 files read as ISO-8859-1; str.splitlines() would split there."""
    path = _write(tmp_path, b"caf\xe9\x85 O\nx O\n")
    assert read_unlabelled(path)[0].words == ("caf\xe9\x85", "x")


def test_cli_mixed_file_is_one_line_exit_2(tmp_path, capsys):
    path = _write(tmp_path, "España B-LOC\n".encode() + "España B-LOC\n".encode("latin-1"))
    assert main(["data", "stats", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [f"unitrans: error: {path}:2: {MIXED_MESSAGE}"]
