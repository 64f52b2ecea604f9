"""Tag raw text with a trained model: word tokenization with character offsets, entities as JSON lines.

The tokenizer is deliberately simple and documented: each non-empty line is one segment; a token is a
run of word characters, optionally joined by inner hyphens, apostrophes or periods (`U.S`, `O'Neil`,
`Jean-Luc`, `3.5`; a final period is its own token), or any single other non-space character
(punctuation). Hand-written because the offsets must map back into the user's text exactly, which
regex `finditer` gives for free.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unitrans.data import Sentence
from unitrans.errors import UnitransError

TOKEN = re.compile(r"\w+(?:[-'’.]\w+)*|[^\w\s]")


@dataclass(frozen=True)
class Token:
    text: str
    start: int
    end: int


def tokenize(text: str, offset: int = 0) -> list[Token]:
    """Word tokens of `text` with [start, end) character offsets (shifted by `offset`)."""
    return [Token(m.group(), m.start() + offset, m.end() + offset) for m in TOKEN.finditer(text)]


def segments(text: str) -> list[list[Token]]:
    """Token lists of each non-empty line, offsets into the whole `text`."""
    out: list[list[Token]] = []
    pos = 0
    for line in text.splitlines(keepends=True):
        tokens = tokenize(line, pos)
        if tokens:
            out.append(tokens)
        pos += len(line)
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


def read_inputs(paths: Iterable[Path], stdin_text: str | None) -> Iterator[tuple[str, str]]:
    """(name, text) of each input file, or of stdin when no file is given."""
    paths = list(paths)
    if not paths:
        yield "-", stdin_text or ""
        return
    for p in paths:
        if not Path(p).is_file():
            raise UnitransError(f"{p}: file not found")
        yield str(p), Path(p).read_text(encoding="utf-8")
