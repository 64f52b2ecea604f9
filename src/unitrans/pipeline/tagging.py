"""Tag raw text with a trained model, line by line: words with offsets, IOB2 tags, entities.

Every input line is one segment and gives exactly one result, in order, empty lines included (they have
no words and no entities). Lines end at `\\r\\n`, `\\n` or a lone `\\r`, as every reader of unitrans
splits them; a final line end does not start another line. Files and stdin are decoded by the same rules
as every other input (`unitrans.data.textfile.decode_bytes`: UTF-8, else ISO-8859-1, one-line errors for
mixed encodings and binary data; a byte-order mark is removed), so the same bytes give the same output.

Offsets (`start`, `end`) count Python code points within the line without its line end, so
`line[start:end] == entity["text"]`: an emoji or any other character outside the BMP is one code point
(JavaScript's UTF-16 indices count it as two), a leading BOM is not in the text at all.

The tokenizer is deliberately simple and documented: a token is a run of word characters, optionally
joined by inner hyphens, apostrophes or periods (`U.S`, `O'Neil`, `Jean-Luc`, `3.5`; a final period is
its own token), or any single other non-space character (punctuation, an emoji, each code point of an
emoji sequence). Hand-written because the offsets must map back into the user's text exactly, which
regex `finditer` gives for free.

The model runs on `batch_lines` lines at a time, so memory does not grow with the input: only the
decoded text is held whole (a bad file fails before anything of it is printed), never all predictions.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import IO

import numpy as np

from unitrans.data import Sentence
from unitrans.data.textfile import decode_bytes, read_bytes
from unitrans.errors import InputError, UnitransError

TOKEN = re.compile(r"\w+(?:[-'’.]\w+)*|[^\w\s]")
# A line with its end, or the last line without one; a final line end starts no further line.
LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")

FORMATS = ("json", "conll")
# Lines per pass of the model: fewer waste time on padding, more cost memory. me5-small, 2 CPU threads
# (benchmarks/bench_tag.py): 256 lines 3.7k words/s, 1024 5.3k, 4096 5.0k words/s and 0.5 GB more.
DEFAULT_BATCH_LINES = 1024


@dataclass(frozen=True)
class Token:
    text: str
    start: int
    end: int


def tokenize(text: str, offset: int = 0) -> list[Token]:
    """Word tokens of `text` with [start, end) character offsets (shifted by `offset`)."""
    return [Token(m.group(), m.start() + offset, m.end() + offset) for m in TOKEN.finditer(text)]


def text_lines(text: str) -> Iterator[tuple[int, str]]:
    """(offset of the line in `text`, line without its end) for every line, lazily."""
    for match in LINE.finditer(text):
        yield match.start(), match.group().rstrip("\r\n")


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


@dataclass(frozen=True)
class TaggedLine:
    """One input line: its 1-based number in its file, its text, words, their tags and the entities."""

    number: int
    text: str
    tokens: tuple[Token, ...]
    tags: tuple[str, ...]
    entities: tuple[Entity, ...]

    def to_dict(self, file: str | None = None) -> dict[str, object]:
        head: dict[str, object] = {"file": file} if file is not None else {}
        return {**head, "line": self.number, "text": self.text,
                "entities": [e.to_dict() for e in self.entities]}  # fmt: skip

    def render(self, fmt: str, file: str | None = None) -> str:
        """The line's output with its line ends: one JSON object, or a CoNLL block and a blank line."""
        if fmt == "conll":
            return "".join(f"{t.text}\t{tag}\n" for t, tag in zip(self.tokens, self.tags, strict=True)) + "\n"
        return json.dumps(self.to_dict(file), ensure_ascii=False) + "\n"


def resolve_model_dir(path: Path) -> Path:
    """A checkpoint folder, or a pipeline stage folder holding one in `model/`."""
    path = Path(path)
    for candidate in (path, path / "model"):
        if (candidate / "config.json").is_file():
            return candidate
    raise UnitransError(f"{path}: not a model folder (expected config.json there or in {path / 'model'})")


class Tagger:
    """A checkpoint loaded once, tagging any number of line batches."""

    def __init__(self, model: Path, *, device: str | None = None, processes: int = 1) -> None:
        from unitrans.model.predict import checkpoint_max_length, model_labels
        from unitrans.model.tagger import load_tagger

        self.model_dir = resolve_model_dir(model)
        self.device, self.processes = device, processes
        self.labels = model_labels(self.model_dir)
        self.model, self.tokenizer = load_tagger(self.model_dir)
        self.max_length = checkpoint_max_length(self.model_dir, self.model)

    def tag_batch(self, lines: Sequence[tuple[int, str]]) -> list[TaggedLine]:
        """Tag (line number, text) pairs in one pass of the model; lines without words skip it."""
        from unitrans.model.predict import predict_loaded
        from unitrans.model.viterbi import decode_tags

        tokens = [tokenize(text) for _, text in lines]
        worded = [i for i, toks in enumerate(tokens) if toks]
        probs: dict[int, np.ndarray] = {}
        tags: dict[int, list[str]] = {}
        if worded:
            sentences = [Sentence(tuple(t.text for t in tokens[i])) for i in worded]
            found = predict_loaded(self.model, self.tokenizer, sentences, max_length=self.max_length,
                                   progress=False, device=self.device, processes=self.processes)  # fmt: skip
            probs = dict(zip(worded, found, strict=True))
            tags = dict(zip(worded, decode_tags(found, self.labels), strict=True))
        out = []
        for i, (number, text) in enumerate(lines):
            line_tags = tags.get(i, [])
            spans = entities(text, tokens[i], line_tags, probs[i], self.labels) if i in probs else []
            out.append(TaggedLine(number, text, tuple(tokens[i]), tuple(line_tags), tuple(spans)))
        return out


def check_batch_lines(batch_lines: int) -> int:
    if isinstance(batch_lines, bool) or not isinstance(batch_lines, int) or batch_lines < 1:
        raise UnitransError(f"expected --batch-lines to be a whole number >= 1, found {batch_lines!r}")
    return batch_lines


def tag_lines(
    tagger: Tagger, lines: Iterable[str], *, batch_lines: int = DEFAULT_BATCH_LINES
) -> Iterator[TaggedLine]:
    """Tagged lines in input order, `batch_lines` through the model at a time (numbered from 1)."""
    check_batch_lines(batch_lines)
    numbered = enumerate(lines, 1)
    while batch := list(islice(numbered, batch_lines)):
        yield from tagger.tag_batch(batch)


def tag_text(model: Path | Tagger, text: str, *, batch_lines: int = DEFAULT_BATCH_LINES) -> list[Entity]:
    """All entities a model finds in `text`, offsets into the whole `text` (line ends counted as they are)."""
    tagger = model if isinstance(model, Tagger) else Tagger(model)
    starts: list[int] = []

    def lines() -> Iterator[str]:
        for start, line in text_lines(text):
            starts.append(start)
            yield line

    out: list[Entity] = []
    for tagged in tag_lines(tagger, lines(), batch_lines=batch_lines):
        shift = starts[tagged.number - 1]
        out.extend(Entity(e.text, e.type, e.start + shift, e.end + shift, e.score) for e in tagged.entities)
    return out


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


@dataclass
class TagStats:
    """What a tagging run did, for the throughput line."""

    lines: int = 0
    words: int = 0
    seconds: float = 0.0
    load_seconds: float = 0.0

    def summary(self) -> str:
        rate = self.words / self.seconds if self.seconds > 0 else 0.0
        return (f"tagged {self.lines} lines, {self.words} words in {self.seconds:.2f} s ({rate:.0f} words/s; "
                f"model loaded in {self.load_seconds:.2f} s)")  # fmt: skip


def tag_files(
    model: Path,
    paths: Sequence[Path],
    write: Callable[[str], object],
    *,
    fmt: str = "json",
    batch_lines: int = DEFAULT_BATCH_LINES,
    stdin: IO[str] | None = None,
    device: str | None = None,
    processes: int = 1,
) -> TagStats:
    """Tag files (or stdin when none), passing each line's output to `write` as soon as its batch is done.

    JSON: one object per input line, `file` added when several files are given. CoNLL: per input line
    its words as `word<TAB>tag` lines, then one blank line, so an empty input line is a blank line alone
    and the k-th blank-line-terminated block is the k-th input line; several files' blocks follow each
    other in order, without file names (tag them one at a time to keep them apart). `processes` > 1
    shares each batch's prediction among forked one-thread processes (same output, faster on a CPU).
    """
    if fmt not in FORMATS:
        raise UnitransError(f"expected --format {' or '.join(FORMATS)}, found {fmt!r}")
    check_batch_lines(batch_lines)
    resolve_model_dir(model)  # a wrong --model is one line before stdin is read
    inputs = read_inputs(paths, stdin)  # all decoded first: a bad file fails before any output
    started = time.perf_counter()
    tagger = Tagger(model, device=device, processes=processes)
    stats = TagStats(load_seconds=time.perf_counter() - started)
    several = len(inputs) > 1
    started = time.perf_counter()
    for name, text in inputs:
        lines = (line for _, line in text_lines(text))
        for tagged in tag_lines(tagger, lines, batch_lines=batch_lines):
            write(tagged.render(fmt, name if several else None))
            stats.lines += 1
            stats.words += len(tagged.tokens)
    stats.seconds = time.perf_counter() - started
    return stats
