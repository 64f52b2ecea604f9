"""Tag raw text with a trained model: word tokenization with character offsets, entities as JSON lines.

The tokenizer is deliberately simple and documented: each non-empty line is one segment; a token is a
run of word characters, optionally joined by inner hyphens, apostrophes or periods (`U.S`, `O'Neil`,
`Jean-Luc`, `3.5`; a final period is its own token), or any single other non-space character
(punctuation). Hand-written because the offsets must map back into the user's text exactly, which
regex `finditer` gives for free.

Offsets (`start`, `end`) count characters (code points) of the input as decoded, line ends included
as they are in the bytes (`\r\n` is two characters), a UTF-8 byte-order mark excluded; so
`text[start:end] == entity["text"]` for `text = data.decode(...)`, e.g. Python's
`open(path, encoding=..., newline="").read()`. Files and stdin are decoded by the same rules as every
other input (`unitrans.data.textfile.decode_bytes`: UTF-8, else ISO-8859-1, errors for mixed encodings
and binary data), so the same bytes give the same offsets either way.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from unitrans.data import Sentence
from unitrans.data.textfile import decode_bytes, read_bytes
from unitrans.errors import InputError, UnitransError

TOKEN = re.compile(r"\w+(?:[-'’.]\w+)*|[^\w\s]")


@dataclass(frozen=True)
class Token:
    text: str
    start: int
    end: int


def tokenize(text: str, offset: int = 0) -> list[Token]:
    """Word tokens of `text` with [start, end) character offsets (shifted by `offset`)."""
    return [Token(m.group(), m.start() + offset, m.end() + offset) for m in TOKEN.finditer(text)]


LINE = re.compile(r"[^\r\n]+")  # line ends \r\n, \n or \r, as every reader of unitrans splits them


def segments(text: str) -> list[list[Token]]:
    """Token lists of each non-empty line, offsets into the whole `text`."""
    out: list[list[Token]] = []
    for line in LINE.finditer(text):
        tokens = tokenize(line.group(), line.start())
        if tokens:
            out.append(tokens)
    return out


@dataclass(frozen=True)
class Entity:
    text: str
    type: str
    start: int
    end: int
    score: float

    def to_dict(self) -> dict[str, object]:
        return {
            "text": self.text,
            "type": self.type,
            "start": self.start,
            "end": self.end,
            "score": round(self.score, 4),
        }


def entities(
    text: str, tokens: list[Token], tags: list[str], probs: np.ndarray, labels: list[str]
) -> list[Entity]:
    """IOB2 spans over `tokens`; score = mean probability the model gave each word's chosen tag."""
    index = {label: i for i, label in enumerate(labels)}
    found: list[Entity] = []
    i = 0
    while i < len(tags):
        if tags[i].startswith("B-") or tags[i].startswith("I-"):
            kind = tags[i][2:]
            j = i + 1
            while j < len(tags) and tags[j] == f"I-{kind}":
                j += 1
            score = float(np.mean([probs[k, index[tags[k]]] for k in range(i, j)]))
            start, end = tokens[i].start, tokens[j - 1].end
            found.append(Entity(text[start:end], kind, start, end, score))
            i = j
        else:
            i += 1
    return found


def tag_text(model_dir: Path, text: str, *, progress: bool = False) -> list[Entity]:
    """All entities a model finds in `text` (offsets into `text`)."""
    from unitrans.model.predict import model_labels, predict_probs
    from unitrans.model.viterbi import decode_tags

    segs = segments(text)
    if not segs:
        return []
    sentences = [Sentence(tuple(t.text for t in seg)) for seg in segs]
    probs = predict_probs(model_dir, sentences, progress=progress)
    labels = model_labels(model_dir)
    out: list[Entity] = []
    for seg, p, tags in zip(segs, probs, decode_tags(probs, labels), strict=True):
        out.extend(entities(text, seg, tags, p, labels))
    return out


def resolve_model_dir(path: Path) -> Path:
    """A checkpoint folder, or a pipeline stage folder holding one in `model/`."""
    path = Path(path)
    for candidate in (path, path / "model"):
        if (candidate / "config.json").is_file():
            return candidate
    raise UnitransError(f"{path}: not a model folder (expected config.json there or in {path / 'model'})")


STDIN_NAME = "<stdin>"


def _decode_input(name: str | Path, data: bytes) -> str:
    text = decode_bytes(name, data)[0]
    if not text.strip(" \t\r\n"):
        raise InputError(name, None, "expected text to tag, found empty input (no words)")
    return text


def read_stdin(stream: IO[str] | None = None) -> str:
    """All of stdin decoded like a file (its bytes when it has them; a text stream is taken as is)."""
    stream = sys.stdin if stream is None else stream
    buffer = getattr(stream, "buffer", None)
    data = buffer.read() if buffer is not None else stream.read().encode("utf-8", "surrogateescape")
    return _decode_input(STDIN_NAME, data)


def read_inputs(paths: Iterable[Path], stdin: IO[str] | None = None) -> list[tuple[str, str]]:
    """(name, text) of each input file, or of stdin when no file is given.

    Every file is read and decoded before any is tagged, so a bad last file fails in a second with
    one line, not after the others were printed. Empty input (no words) is an error, as for every
    other command: tagging nothing is a mistake upstream, e.g. a wrong file or a failed pipe.
    """
    paths = list(paths)
    if not paths:
        return [("-", read_stdin(stdin))]
    return [(str(p), _decode_input(p, read_bytes(p))) for p in paths]
