"""Read and write CoNLL column files as users really have them.

Word in the first column, tag in the last (or `tag_column`), any number of columns in between,
separated by spaces or tabs; a blank line ends a sentence. Document-marker lines (`-DOCSTART-` alone or
with the marker's usual columns -X-/-DOCSTART-/O, see `schemes.is_docstart`) are dropped whether they
form a block of their own (CoNLL-2003) or open a sentence block (CoNLL-2002 Dutch); any other line
starting with `-DOCSTART-`, or one after token lines of its block, is a token line like the others.
Tags in IOB1, IOB2 or BIOES are detected per file and converted to IOB2. Nothing is skipped silently: every
malformed line stops reading with `FILE:LINE: expected ..., found ...`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from unitrans.atomic import write_text_atomic
from unitrans.data.schemes import SCHEME_PREFIXES, SCHEMES, detect_scheme, is_docstart, parse_tag, to_iob2
from unitrans.data.sentence import Sentence
from unitrans.data.textfile import TextFile, load_text, split_fields
from unitrans.errors import InputError, UnitransError

_SCHEME_ALIASES = {"BIO": "IOB2", "IOBES": "BIOES"}


@dataclass(frozen=True)
class Block:
    """One blank-line block: its token lines as (line number, fields), -DOCSTART- lines removed."""

    rows: list[tuple[int, list[str]]]
    had_docstart: bool


@dataclass(frozen=True)
class ColumnFile:
    """A column file split into blocks, with the counts `unitrans data check` reports."""

    text: TextFile
    blocks: list[Block]
    columns: int

    @property
    def n_blocks(self) -> int:
        """Blank-line blocks, -DOCSTART- blocks included (how the paper's Table 1 counts)."""
        return len(self.blocks)

    @property
    def n_docstart_blocks(self) -> int:
        return sum(1 for b in self.blocks if not b.rows)


@dataclass(frozen=True)
class ConllFile:
    """A labelled file read into IOB2 sentences, plus what was learnt while reading it."""

    path: Path
    sentences: list[Sentence]
    n_blocks: int
    n_docstart_blocks: int
    columns: int
    scheme: str
    encoding: str


def normalize_scheme(scheme: str) -> str:
    """Canonical scheme name ("auto", "IOB1", "IOB2", "BIOES"); accepts BIO and IOBES aliases."""
    name = scheme.upper()
    name = _SCHEME_ALIASES.get(name, name)
    if name != "AUTO" and name not in SCHEMES:
        raise UnitransError(
            f"expected a tag scheme among auto, IOB1, IOB2 (BIO), BIOES (IOBES), found {scheme!r}"
        )
    return "auto" if name == "AUTO" else name


def split_columns(text: TextFile, *, min_columns: int = 1) -> ColumnFile:
    """Split lines into blocks and check that every token line has the file's column count."""
    blocks: list[Block] = []
    rows: list[tuple[int, list[str]]] = []
    had_docstart = False
    columns = 0
    first_line = 0
    for number, line in enumerate(text.lines, start=1):
        fields = split_fields(line)
        if not fields:
            if rows or had_docstart:
                blocks.append(Block(rows, had_docstart))
            rows, had_docstart = [], False
            continue
        if not rows and is_docstart(fields, columns=True):  # a marker opens its block; later, a token
            had_docstart = True
            continue
        if columns == 0:
            columns, first_line = len(fields), number
            if columns < min_columns:
                raise InputError(
                    text.path,
                    number,
                    f"expected at least {min_columns} columns (word ... tag), found {columns} column; "
                    "untagged text is read with read_unlabelled / --unlabelled inputs",
                )
        elif len(fields) != columns:
            raise InputError(
                text.path,
                number,
                f"expected {columns} columns like line {first_line}, found {len(fields)}: {line.strip()!r}",
            )
        rows.append((number, fields))
    if rows or had_docstart:
        blocks.append(Block(rows, had_docstart))
    if columns == 0:
        raise InputError(text.path, None, "expected token lines, found only -DOCSTART- and blank lines")
    return ColumnFile(text, blocks, columns)


def _tag_index(path: Path, columns: int, tag_column: int, first_line: int) -> int:
    index = tag_column if tag_column >= 0 else columns + tag_column
    if not 1 <= index < columns:
        raise InputError(
            path,
            first_line,
            f"expected tag column {tag_column} to be a column after the word (file has {columns}), "
            "found it out of range",
        )
    return index


def read_conll_file(
    path: str | Path, *, tag_column: int = -1, encoding: str | None = None, scheme: str = "auto"
) -> ConllFile:
    """Read a labelled column file; tags are validated, scheme-detected and converted to IOB2."""
    wanted = normalize_scheme(scheme)
    cols = split_columns(load_text(path, encoding), min_columns=2)
    text = cols.text
    first_line = next(rows[0][0] for b in cols.blocks if (rows := b.rows))
    index = _tag_index(text.path, cols.columns, tag_column, first_line)
    raw: list[tuple[int, list[str], list[str]]] = []
    for block in cols.blocks:
        if not block.rows:
            continue
        words, tags = [], []
        for number, fields in block.rows:
            tag = fields[index]
            try:
                prefix, _ = parse_tag(tag)
            except ValueError:
                raise InputError(
                    text.path,
                    number,
                    f"expected a tag like O, B-PER or I-LOC in column {index + 1}, found {tag!r}",
                ) from None
            if wanted != "auto" and prefix != "O" and prefix not in SCHEME_PREFIXES[wanted]:
                allowed = ", ".join(f"{p}-" for p in sorted(SCHEME_PREFIXES[wanted]))
                raise InputError(
                    text.path, number, f"expected an {wanted} tag ({allowed} or O), found {tag!r}"
                )
            words.append(fields[0])
            tags.append(tag)
        raw.append((block.rows[0][0], words, tags))
    found = detect_scheme([tags for _, _, tags in raw]) if wanted == "auto" else wanted
    sentences = [Sentence(tuple(w), tuple(to_iob2(t, found)), line) for line, w, t in raw]
    return ConllFile(
        text.path, sentences, cols.n_blocks, cols.n_docstart_blocks, cols.columns, found, text.encoding
    )


def read_conll(
    path: str | Path, *, tag_column: int = -1, encoding: str | None = None, scheme: str = "auto"
) -> list[Sentence]:
    """Labelled sentences of a CoNLL file, tags in IOB2 (see `read_conll_file`)."""
    return read_conll_file(path, tag_column=tag_column, encoding=encoding, scheme=scheme).sentences


def _check_word(word: str, where: str) -> None:
    if not word or any(c in word for c in " \t\r\n"):
        raise UnitransError(f"{where}: expected a word without spaces or line breaks, found {word!r}")


def write_conll(
    path: str | Path,
    sentences: Sequence[Sentence],
    tags: Sequence[Sequence[str]] | None = None,
    *,
    keep_gold: bool = False,
) -> None:
    """Write `word TAG` lines, a blank line after each sentence, atomically and with the umask's mode.

    `tags` overrides the sentences' own tags; with `keep_gold=True` both are written as
    `word GOLD PRED` (conlleval's layout, readable by `unitrans evaluate --pred FILE`).
    Unlabelled sentences without `tags` are written one word per line.
    """
    path = Path(path)
    if tags is not None and len(tags) != len(sentences):
        raise ValueError(f"{len(sentences)} sentences but {len(tags)} tag sequences")
    lines: list[str] = []
    for i, sentence in enumerate(sentences):
        own = sentence.tags
        pred = tags[i] if tags is not None else None
        if pred is not None and len(pred) != len(sentence.words):
            raise ValueError(f"sentence {i}: {len(sentence.words)} words but {len(pred)} tags")
        if keep_gold and (own is None or pred is None):
            raise ValueError("keep_gold=True needs labelled sentences and predicted tags")
        columns = [
            c for c in ((own if keep_gold else None), pred if pred is not None else own) if c is not None
        ]
        for column in columns:
            for tag in column:
                try:
                    parse_tag(tag)
                except ValueError as err:
                    raise UnitransError(f"sentence {i}: {err}") from None
        for j, word in enumerate(sentence.words):
            _check_word(word, f"sentence {i} word {j}")
            lines.append(" ".join([word, *(c[j] for c in columns)]))
        lines.append("")
    write_text_atomic(path, "\n".join(lines) + ("\n" if lines else ""))
