"""Read unlabelled target-language text in the three shapes users have it.

- "conll": a column file (word first, any other columns ignored, tags included), blank-line blocks;
- "tokens": one token per line, a blank line between sentences;
- "text": one sentence per line, tokens separated by spaces or tabs (blank lines are not sentences).

`fmt="auto"` picks "conll" when every line has the same number (>= 2) of columns and the last column
reads as tags, "tokens" when every line has one field and blank lines separate sentences, and "text"
otherwise. Document markers are dropped in every format: a line that is `-DOCSTART-` alone, or (column
formats) `-DOCSTART-` with the marker's usual columns; a text line `-DOCSTART- Madrid is nice` keeps all
its words, so every word of the input is a word of the output.
"""

from __future__ import annotations

import logging
from pathlib import Path

from unitrans.data.conll import split_columns
from unitrans.data.schemes import is_docstart, parse_tag
from unitrans.data.sentence import Sentence
from unitrans.data.textfile import TextFile, load_text, split_fields
from unitrans.errors import InputError, UnitransError

logger = logging.getLogger(__name__)

FORMATS = ("auto", "conll", "tokens", "text")


def detect_format(text: TextFile) -> str:
    """Guess the layout of an unlabelled file (see the module docstring)."""
    widths: set[int] = set()
    has_blank = False
    tags_ok = True
    column_markers = False
    for line in text.lines:
        fields = split_fields(line)
        if not fields:
            has_blank = True
            continue
        if is_docstart(fields, columns=True):
            column_markers = column_markers or len(fields) > 1
            continue
        widths.add(len(fields))
        if tags_ok and len(fields) >= 2:
            try:
                parse_tag(fields[-1])
            except ValueError:
                tags_ok = False
    if not widths and column_markers:
        return "conll"  # nothing but `-DOCSTART- -X- -X- O` markers: a column file without sentences
    if len(widths) == 1:
        (width,) = widths
        if width >= 2 and tags_ok:
            return "conll"
        if width == 1 and has_blank:
            return "tokens"
    return "text"


def _read_text_lines(text: TextFile) -> list[Sentence]:
    sentences = []
    for number, line in enumerate(text.lines, start=1):
        fields = split_fields(line)
        if fields and not is_docstart(fields, columns=False):
            sentences.append(Sentence(tuple(fields), None, number))
    return sentences


def read_unlabelled(path: str | Path, *, encoding: str | None = None, fmt: str = "auto") -> list[Sentence]:
    """Sentences (tags=None) of an unlabelled or labelled file; tags, if any, are ignored."""
    if fmt not in FORMATS:
        raise UnitransError(f"expected an unlabelled format among {', '.join(FORMATS)}, found {fmt!r}")
    text = load_text(path, encoding)
    chosen = detect_format(text) if fmt == "auto" else fmt
    if fmt == "auto":
        logger.debug("%s: reading unlabelled text as %r", text.path, chosen)
    if chosen == "text":
        sentences = _read_text_lines(text)
    else:
        cols = split_columns(text, min_columns=1)
        if chosen == "tokens" and cols.columns != 1:
            first = next(rows[0][0] for b in cols.blocks if (rows := b.rows))
            raise InputError(text.path, first, f"expected one token per line, found {cols.columns} columns")
        sentences = [
            Sentence(tuple(f[0] for _, f in b.rows), None, b.rows[0][0]) for b in cols.blocks if b.rows
        ]
    if not sentences:
        raise InputError(text.path, None, "expected at least one sentence, found none")
    return sentences
