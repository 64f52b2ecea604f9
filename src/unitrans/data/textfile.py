"""Turn a user's file into text lines, or say precisely why it cannot be read.

Real NER files come as UTF-8, UTF-8 with a BOM, ISO-8859-1 (the German CoNLL-2003 originals), with
CRLF line ends; this module hides all of that behind one function and turns every way of failing
(missing, a folder, empty, binary, undecodable) into a one-line `InputError`.
"""

from __future__ import annotations

import codecs
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from unitrans.errors import InputError

logger = logging.getLogger(__name__)

# Columns are separated by spaces or tabs only: str.split() would also split on NO-BREAK SPACE and
# other Unicode spaces that can sit inside real tokens.
_SEPARATORS = re.compile(r"[ \t]+")


@dataclass(frozen=True)
class TextFile:
    """Decoded lines (without line ends) and the encoding that decoded them."""

    path: Path
    lines: list[str]
    encoding: str


def split_fields(line: str) -> list[str]:
    """Columns of one line; an empty list for a blank line."""
    stripped = line.strip(" \t")
    return _SEPARATORS.split(stripped) if stripped else []


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _decode(path: Path, data: bytes, encoding: str | None) -> tuple[str, str]:
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise InputError(path, None, f"expected a known text encoding, found {encoding!r}") from None
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as err:
            found = data[err.start : err.start + 1].hex()
            raise InputError(
                path, _line_of(data, err.start), f"expected {encoding} text, found byte 0x{found}"
            ) from None
        return text.removeprefix("\ufeff"), encoding
    for bom, name in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            try:
                return data.decode(name).removeprefix("\ufeff"), name
            except UnicodeDecodeError as err:
                raise InputError(
                    path,
                    _line_of(data, err.start),
                    f"expected {name} text after its byte-order mark, found undecodable bytes",
                ) from None
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        logger.info("%s is not UTF-8; reading it as ISO-8859-1", path)
        return data.decode("iso-8859-1"), "iso-8859-1"


def load_text(path: str | Path, encoding: str | None = None) -> TextFile:
    """Read and decode a text file: UTF-8 (BOM optional), else ISO-8859-1, or `encoding` if given."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, None, "expected an existing file, found no such file")
    if path.is_dir():
        raise InputError(path, None, "expected a file, found a directory")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(path, None, f"expected a readable file, found {err.strerror}") from None
    if not data.strip():
        raise InputError(path, None, "expected text lines, found an empty file")
    has_utf16_bom = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    if not has_utf16_bom and encoding is None and b"\x00" in data:
        offset = data.index(b"\x00")
        raise InputError(
            path,
            _line_of(data, offset),
            f"expected a text file, found binary data (NUL byte at offset {offset})",
        )
    text, used = _decode(path, data, encoding)
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    if "\x00" in text and not has_utf16_bom:
        raise InputError(path, None, "expected a text file, found NUL characters")
    return TextFile(path, lines, used)
