"""`unitrans tag`: the word tokenizer's offsets, entity spans and scores, the command on a tiny model."""

from __future__ import annotations

import io
import json

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


def test_tag_command_prints_json_lines(tiny_encoder_dir, tmp_path, capsys, monkeypatch):
    train = [Sentence(("John", "visited", "Madrid", "."), ("B-PER", "O", "B-LOC", "O"))] * 8
    config = TrainConfig(encoder=str(tiny_encoder_dir), epochs=3, lr=5e-3, batch_size=4, freeze_layers=0,
                         max_length=32)  # fmt: skip
    model = train_tagger(train, tmp_path / "model", config, progress=False)
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
