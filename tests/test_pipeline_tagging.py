"""`unitrans tag`: tokenizer and line offsets, entity spans and scores, the command's per-line JSON and CoNLL
output, batching and streaming, on a tiny model."""

from __future__ import annotations

import codecs
import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from unitrans.cli import main
from unitrans.data import Sentence
from unitrans.data.schemes import CONLL_LABELS, parse_tag
from unitrans.pipeline import tagging
from unitrans.pipeline.tagging import Tagger, entities, tag_text, text_lines, tokenize
from unitrans.train.supervised import TrainConfig, train_tagger


def test_tokenizer_keeps_offsets():
    text = "Jean-Luc visited the U.S. in 2020, O'Neil said."
    tokens = tokenize(text)
    assert [t.text for t in tokens] == ["Jean-Luc", "visited", "the", "U.S", ".", "in", "2020", ",",
                                        "O'Neil", "said", "."]  # fmt: skip
    assert all(text[t.start : t.end] == t.text for t in tokens)


def test_text_lines_split_at_every_line_end_with_offsets():
    text = "Juan vive.\r\n\r\n  Maria  dijo\rJohn\n\nlast"
    lines = list(text_lines(text))
    assert [line for _, line in lines] == ["Juan vive.", "", "  Maria  dijo", "John", "", "last"]
    assert all(text[start : start + len(line)] == line for start, line in lines)
    assert [start for start, _ in lines] == [0, 12, 14, 28, 33, 34]
    assert list(text_lines("a\n")) == [(0, "a")]  # a final line end starts no further line
    assert list(text_lines("\n")) == [(0, "")]


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


def _tag(argv: list[str], capsys) -> tuple[list[dict], str]:
    """Run `unitrans tag ARGV`; its JSON rows and stderr."""
    assert main(["tag", *argv]) == 0
    out, err = capsys.readouterr()
    return [json.loads(line) for line in out.splitlines()], err


def _check_offsets(rows: list[dict]) -> None:
    for row in rows:
        for entity in row["entities"]:
            assert set(entity) == {"text", "type", "start", "end", "score"}
            assert row["text"][entity["start"] : entity["end"]] == entity["text"]
            assert 0 < entity["score"] <= 1


def test_tag_prints_one_object_per_line_in_order(tagger, tmp_path, capsys, monkeypatch):
    text = tmp_path / "in.txt"
    text.write_text("John visited Madrid .\n\n   \nthe man\nMadrid John\n")
    rows, err = _tag(["--model", str(tagger), str(text)], capsys)
    assert [set(r) for r in rows] == [{"line", "text", "entities"}] * 5
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["text"] for r in rows] == ["John visited Madrid .", "", "   ", "the man", "Madrid John"]
    assert rows[1]["entities"] == [] and rows[2]["entities"] == []
    _check_offsets(rows)
    assert [(e["text"], e["type"], e["start"], e["end"]) for e in rows[0]["entities"]] == [
        ("John", "PER", 0, 4), ("Madrid", "LOC", 13, 19)]  # fmt: skip
    assert {e["start"] for e in rows[4]["entities"]} <= {0, 7}  # offsets restart on every line
    assert re.fullmatch(
        r"tagged 5 lines, 8 words in [\d.]+ s \(\d+ words/s; model loaded in [\d.]+ s\)\n", err
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(text.read_text()))
    assert _tag(["--model", str(tagger), "--quiet"], capsys) == (rows, "")  # stdin: the same, no stderr
    assert main(["tag", "--model", str(tmp_path / "nothing")]) == 2


@pytest.mark.parametrize("end", ["\r\n", "\r", "\n"])
def test_line_ends_are_not_in_the_text_or_offsets_from_files_and_stdin(
    tagger, tmp_path, capsys, monkeypatch, end
):
    data = end.join(["John visited Madrid .", "the man", "", "  John visited Madrid .", ""]).encode()
    path = tmp_path / "in.txt"
    path.write_bytes(data)
    rows, _ = _tag(["--model", str(tagger), str(path)], capsys)
    assert [r["text"] for r in rows] == ["John visited Madrid .", "the man", "", "  John visited Madrid ."]
    _check_offsets(rows)
    assert [(e["text"], e["start"]) for e in rows[3]["entities"]] == [("John", 2), ("Madrid", 15)]
    monkeypatch.setattr("sys.stdin", _stdin(data))
    assert _tag(["--model", str(tagger)], capsys)[0] == rows


def test_latin1_and_bom_inputs_are_decoded_and_offsets_exclude_the_bom(tagger, tmp_path, capsys):
    latin = tmp_path / "latin.txt"
    latin.write_bytes("José visited Madrid .\n".encode("latin-1"))
    bom = tmp_path / "bom.txt"
    bom.write_bytes(codecs.BOM_UTF8 + "José visited Madrid .\r\nMadrid\r\n".encode())
    for path in (latin, bom):
        rows, _ = _tag(["--model", str(tagger), str(path)], capsys)
        assert rows[0]["text"] == "José visited Madrid ."
        assert ("Madrid", 13, 19) in {(e["text"], e["start"], e["end"]) for e in rows[0]["entities"]}


def test_offsets_count_code_points_so_emoji_are_one(tagger, tmp_path, capsys):
    path = tmp_path / "emoji.txt"
    path.write_text("🎉 the man visited Madrid 😀 .\n\U0001d400\u200d👩 Madrid\n", encoding="utf-8")
    rows, _ = _tag(["--model", str(tagger), str(path)], capsys)
    _check_offsets(rows)
    spans = [{(e["text"], e["start"], e["end"]) for e in row["entities"]} for row in rows]
    assert ("Madrid", 18, 24) in spans[0] and ("Madrid", 4, 10) in spans[1]
    assert main(["tag", "--model", str(tagger), "--format", "conll", str(path)]) == 0
    words = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines() if line]
    assert words[:7] == ["🎉", "the", "man", "visited", "Madrid", "😀", "."]


def test_several_files_name_theirs_and_number_lines_from_one(tagger, tmp_path, capsys):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("John visited Madrid .\n\n")
    b.write_text("the man\r\nMadrid\r\n")
    rows, err = _tag(["--model", str(tagger), str(a), str(b)], capsys)
    assert [(r["file"], r["line"], r["text"]) for r in rows] == [
        (str(a), 1, "John visited Madrid ."), (str(a), 2, ""),
        (str(b), 1, "the man"), (str(b), 2, "Madrid")]  # fmt: skip
    assert list(rows[0]) == ["file", "line", "text", "entities"]
    assert err.startswith("tagged 4 lines, 7 words in ")


def test_conll_gives_every_word_one_tag_and_a_blank_line_after_each_input_line(tagger, tmp_path, capsys):
    lines = ["John visited Madrid .", "", "  ", "O'Neil, the man"]
    path = tmp_path / "in.txt"
    path.write_text("\r\n".join(lines))
    assert main(["tag", "--model", str(tagger), "--format", "conll", str(path), str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("John\tB-PER\nvisited\tO\nMadrid\tB-LOC\n.\tO\n\n\n\n")  # empty lines: a blank line
    blocks: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in out.split("\n")[:-1]:
        if line:
            current.append(line.split("\t"))
        else:
            blocks.append(current)
            current = []
    assert out.endswith("\n") and current == [] and len(blocks) == 2 * len(lines)  # no "file" lines
    assert [[word for word, _ in b] for b in blocks] == [
        [t.text for t in tokenize(line)] for line in lines
    ] * 2
    assert all(parse_tag(tag) for b in blocks for _, tag in b)


def test_batches_give_the_same_output_as_one_line_at_a_time(tagger, tmp_path, capsys):
    words = "John visited Madrid the man said in London Paris with".split()
    lines = [" ".join(words[(i * 7) % 10 : (i * 7) % 10 + 1 + i % 9] * (1 + i % 3)) for i in range(40)]
    lines[5] = lines[17] = ""
    path = tmp_path / "in.txt"
    path.write_text("\n".join(lines) + "\n")
    outputs = []
    for size, processes in (("1", "1"), ("7", "1"), ("1000", "1"), ("1000", "3")):
        for fmt in ("json", "conll"):
            argv = ["--batch-lines", size, "--processes", processes, "--format", fmt, str(path)]
            assert main(["tag", "--model", str(tagger), *argv]) == 0
            outputs.append(capsys.readouterr().out)
    assert outputs[0::2] == [outputs[0]] * 4 and outputs[1::2] == [outputs[1]] * 4
    assert len(outputs[0].splitlines()) == 40 and '"type": "LOC"' in outputs[0]


def test_model_work_is_batched_and_each_batch_written_before_the_next(tagger, tmp_path, monkeypatch):
    path = tmp_path / "in.txt"
    path.write_text("John visited Madrid .\n" * 600)
    events: list[object] = []
    tag_batch = Tagger.tag_batch

    def recording(self, lines):
        events.append(len(lines))
        return tag_batch(self, lines)

    monkeypatch.setattr(Tagger, "tag_batch", recording)
    stats = tagging.tag_files(tagger, [path], lambda text: events.append("w"), batch_lines=256)
    assert (stats.lines, stats.words) == (600, 2400)
    assert events == [256, *["w"] * 256, 256, *["w"] * 256, 88, *["w"] * 88]


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--batch-lines", "0"], "expected --batch-lines to be a whole number >= 1, found 0"),
     (["--format", "xml"], "expected --format json or conll, found 'xml'"),
     (["--processes", "-1"], "--processes must be 0 (one per thread) or more, got -1")],
)  # fmt: skip
def test_bad_options_are_one_line(tagger, tmp_path, capsys, argv, message):
    path = tmp_path / "in.txt"
    path.write_text("John\n")
    assert main(["tag", "--model", str(tagger), *argv, str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"unitrans: error: {message}"]


def test_tag_text_gives_offsets_into_the_whole_text(tagger):
    text = "the man\r\n\r\nJohn visited Madrid .\rMadrid"
    found = tag_text(tagger, text, batch_lines=2)
    spans = {(e.text, e.type, e.start) for e in found}
    assert spans >= {("John", "PER", 11), ("Madrid", "LOC", 24), ("Madrid", "LOC", 33)}
    assert all(text[e.start : e.end] == e.text for e in found)


def test_a_reader_that_leaves_early_stops_tagging_quietly(tagger, tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("John visited Madrid .\n" * 5000)
    code = "import sys; from unitrans.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "tag", "--model", str(tagger), "--batch-lines", "8",
                             str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert json.loads(first)["line"] == 1 and err == ""


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
    assert [t.text for t in tokenize("-DOCSTART- John")] == ["-", "DOCSTART", "-", "John"]
