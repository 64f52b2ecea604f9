"""`unitrans tag`: the word tokenizer's offsets, entity spans and scores, the command on a tiny model."""

from __future__ import annotations

import codecs
import io
import json
import os

import numpy as np
import pytest

from unitrans.cli import main
from unitrans.data import Sentence
from unitrans.data.schemes import CONLL_LABELS
from unitrans.pipeline.tagging import entities, segments, tokenize
from unitrans.train.supervised import TrainConfig, train_tagger


def test_tokenizer_keeps_offsets():
    text = "Jean-Luc visited the U.S. in 2020, O'Neil said."
    tokens = tokenize(text)
    assert [t.text for t in tokens] == ["Jean-Luc", "visited", "the", "U.S", ".", "in", "2020", ",",
                                        "O'Neil", "said", "."]  # fmt: skip
    assert all(text[t.start : t.end] == t.text for t in tokens)


def test_segments_are_lines_with_global_offsets():
    text = "Juan vive.\n\n  Maria  dijo\n"
    segs = segments(text)
    assert [[t.text for t in s] for s in segs] == [["Juan", "vive", "."], ["Maria", "dijo"]]
    assert all(text[t.start : t.end] == t.text for s in segs for t in s)


def test_entities_spans_and_scores():
    text = "John Smith visited Madrid"
    tokens = tokenize(text)
    labels = list(CONLL_LABELS)
    tags = ["B-PER", "I-PER", "O", "B-LOC"]
    probs = np.full((4, len(labels)), 0.05, dtype=np.float32)
    for i, (tag, p) in enumerate(zip(tags, [0.9, 0.7, 0.8, 0.6], strict=True)):
        probs[i, labels.index(tag)] = p
    found = entities(text, tokens, tags, probs, labels)
    assert [(e.text, e.type, e.start, e.end) for e in found] == [("John Smith", "PER", 0, 10),
                                                                  ("Madrid", "LOC", 19, 25)]  # fmt: skip
    assert found[0].score == pytest.approx(0.8) and found[1].score == pytest.approx(0.6)


@pytest.fixture(scope="module")
def tagger(tiny_encoder_dir, tmp_path_factory):
    """A tiny tagger that finds John (PER) and Madrid (LOC), trained once for the module."""
    train = [Sentence(("John", "visited", "Madrid", "."), ("B-PER", "O", "B-LOC", "O"))] * 8
    config = TrainConfig(encoder=str(tiny_encoder_dir), epochs=3, lr=5e-3, batch_size=4, freeze_layers=0,
                         max_length=32)  # fmt: skip
    return train_tagger(train, tmp_path_factory.mktemp("tagger") / "model", config, progress=False)


def _stdin(data: bytes) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(data))


def test_tag_command_prints_json_lines(tagger, tmp_path, capsys, monkeypatch):
    model = tagger
    text = tmp_path / "in.txt"
    text.write_text("John visited Madrid .\nthe man\n")
    assert main(["tag", "--model", str(model), str(text)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    content = text.read_text()
    for row in rows:
        assert set(row) == {"text", "type", "start", "end", "score"}
        assert content[row["start"] : row["end"]] == row["text"] and 0 < row["score"] <= 1
    assert {(r["text"], r["type"]) for r in rows} >= {("John", "PER"), ("Madrid", "LOC")}
    monkeypatch.setattr("sys.stdin", io.StringIO(content))
    assert main(["tag", "--model", str(model)]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == rows
    assert main(["tag", "--model", str(tmp_path / "nothing")]) == 2


@pytest.mark.parametrize("end", ["\r\n", "\r", "\n"])
def test_offsets_count_the_line_ends_as_they_are_in_files_and_stdin(
    tagger, tmp_path, capsys, monkeypatch, end
):
    data = end.join(["John visited Madrid .", "the man", "", "John visited Madrid .", ""]).encode()
    path = tmp_path / "in.txt"
    path.write_bytes(data)
    assert main(["tag", "--model", str(tagger), str(path)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    text = data.decode("utf-8")  # the input as is, no newline translation
    with path.open(encoding="utf-8", newline="") as fh:
        assert fh.read() == text
    assert [(r["text"], r["type"]) for r in rows if r["text"] == "Madrid"] == [("Madrid", "LOC")] * 2
    for row in rows:
        assert text[row["start"] : row["end"]] == row["text"]
    monkeypatch.setattr("sys.stdin", _stdin(data))
    assert main(["tag", "--model", str(tagger)]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == rows


def test_segments_with_crlf_and_cr_offsets():
    text = "Juan vive.\r\n\r\nMaria dijo\rJohn\n"
    segs = segments(text)
    assert [[t.text for t in s] for s in segs] == [["Juan", "vive", "."], ["Maria", "dijo"], ["John"]]
    assert all(text[t.start : t.end] == t.text for s in segs for t in s)
    assert segs[1][0].start == 14


def test_latin1_and_bom_inputs_are_decoded_and_offsets_exclude_the_bom(tagger, tmp_path, capsys):
    latin = tmp_path / "latin.txt"
    latin.write_bytes("José visited Madrid .\n".encode("latin-1"))
    bom = tmp_path / "bom.txt"
    bom.write_bytes(codecs.BOM_UTF8 + "José visited Madrid .\n".encode())
    for path in (latin, bom):
        assert main(["tag", "--model", str(tagger), str(path)]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert ("Madrid", 13, 19) in {(r["text"], r["start"], r["end"]) for r in rows}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("España visited Madrid\n".encode() + "España\n".encode("latin-1"),
         ":2: not valid UTF-8, while other lines are (mixed encodings); convert the file to UTF-8"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", ": binary file (NUL bytes), expected text"),
        (b"", ": expected text to tag, found empty input (no words)"),
        (b" \r\n\n", ": expected text to tag, found empty input (no words)"),
    ],
    ids=["mixed", "binary", "empty", "blank"],
)  # fmt: skip
def test_bad_input_of_tag_is_one_line_from_files_and_stdin(
    tagger, tmp_path, capsys, monkeypatch, data, message
):
    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    good.write_text("John visited Madrid .\n")
    bad.write_bytes(data)
    assert main(["tag", "--model", str(tagger), str(good), str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # every file is checked before the first is tagged
    assert err.splitlines() == [f"unitrans: error: {bad}{message}"]
    monkeypatch.setattr("sys.stdin", _stdin(data))
    assert main(["tag", "--model", str(tagger)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"unitrans: error: <stdin>{message}"]


def test_tag_missing_folder_and_symlink_loop_are_one_line(tagger, tmp_path, capsys):
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    for path, found in [(tmp_path / "a", "a symlink loop"), (tmp_path / "none.txt", "no such file"),
                        (tmp_path, "a directory")]:  # fmt: skip
        assert main(["tag", "--model", str(tagger), str(path)]) == 2
        [line] = capsys.readouterr().err.splitlines()
        assert line.startswith(f"unitrans: error: {path}: expected ") and found in line


def test_docstart_in_raw_text_is_tagged_like_any_word():
    segs = segments("-DOCSTART- John visited Madrid\n-DOCSTART-\n")
    assert [[t.text for t in s] for s in segs] == [["-", "DOCSTART", "-", "John", "visited", "Madrid"],
                                                   ["-", "DOCSTART", "-"]]  # fmt: skip
