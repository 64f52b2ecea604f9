"""Turn a user's file into text lines, or say precisely why it cannot be read.

Real NER files come as UTF-8, UTF-8 with a BOM, ISO-8859-1 (the German CoNLL-2003 originals), with
CRLF (or old Mac CR-only) line ends; this module hides all of that behind one function and turns every
way of failing (missing, a folder, a symlink loop, unreadable, empty, binary, undecodable, mixed
encodings) into a one-line `InputError`.

Encoding rules when none is given: a byte-order mark decides; else a file that is valid UTF-8 is
UTF-8; a file with invalid UTF-8 bytes and no valid multi-byte UTF-8 sequence is ISO-8859-1; a file
that has both is an error (decoding it either way would corrupt some lines: `España` read as
`EspaÃ±a`). NUL bytes mean a binary file (or UTF-16 without its BOM), also an error.
"""

from __future__ import annotations

import codecs
import errno
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from unitrans.atomic import describe_os_error
from unitrans.errors import InputError

logger = logging.getLogger(__name__)

# Columns are separated by spaces or tabs only: str.split() would also split on NO-BREAK SPACE and
# other Unicode spaces that can sit inside real tokens.
_SEPARATORS = re.compile(r"[ \t]+")
# Line ends as Python's universal newlines read them: \r\n, \n, or a lone \r. Not str.splitlines(),
# which also splits at \x85 (a character of ISO-8859-1 / cp1252 text), \x0c, \u2028 ...
_LINE_END = re.compile(r"\r\n|\r|\n")
# A character that only a valid multi-byte UTF-8 sequence decodes to: not ASCII, not one of the
# U+DC80..U+DCFF surrogates that "surrogateescape" gives invalid bytes.
_VALID_NON_ASCII = re.compile("[^\x00-\x7f\udc80-\udcff]")
_INVALID_BYTE = re.compile("[\udc80-\udcff]")

BINARY_MESSAGE = "binary file (NUL bytes), expected text"
MIXED_MESSAGE = "not valid UTF-8, while other lines are (mixed encodings); convert the file to UTF-8"


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


def split_lines(text: str) -> list[str]:
    """Lines without their ends (\\r\\n, \\n or \\r); no empty last line for a final line end."""
    lines = _LINE_END.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _line_of_text(text: str, index: int) -> int:
    return len(_LINE_END.findall(text, 0, index)) + 1


def _line_of(data: bytes, offset: int, codec: str = "utf-8") -> int:
    """1-based line of byte `offset`, counting line ends as `split_lines` does."""
    prefix = data[:offset].decode(codec, errors="replace")
    return _line_of_text(prefix, len(prefix))


def decode_bytes(path: str | Path, data: bytes, encoding: str | None = None) -> tuple[str, str]:
    """(text, encoding used) of a file's bytes by the module's rules; the BOM is removed, line ends kept.

    Raises a one-line `InputError` for binary data, undecodable bytes and mixed encodings. Empty data
    gives empty text: whether that is an error is the caller's call.
    """
    has_utf16_bom = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    if encoding is None and not has_utf16_bom and b"\x00" in data:
        raise InputError(path, None, BINARY_MESSAGE)
    text, used = _decode(path, data, encoding)
    if "\x00" in text:
        raise InputError(path, None, BINARY_MESSAGE)
    return text, used


def _decode(path: str | Path, data: bytes, encoding: str | None) -> tuple[str, str]:
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
                path, _line_of(data, err.start, encoding), f"expected {encoding} text, found byte 0x{found}"
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
                    _line_of(data, err.start, name),
                    f"expected {name} text after its byte-order mark, found undecodable bytes",
                ) from None
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    escaped = data.decode("utf-8", errors="surrogateescape")
    if _VALID_NON_ASCII.search(escaped):
        bad = _INVALID_BYTE.search(escaped)
        line = _line_of_text(escaped, bad.start()) if bad else None
        raise InputError(path, line, MIXED_MESSAGE)
    logger.info("%s is not UTF-8; reading it as ISO-8859-1", path)
    return data.decode("iso-8859-1"), "iso-8859-1"


def read_error_message(path: Path, err: OSError) -> str:
    """What went wrong opening an input file, as `expected ..., found ...`."""
    if err.errno == errno.ENOENT:
        if path.is_symlink():
            return "expected an existing file, found a broken symbolic link"
        return "expected an existing file, found no such file"
    if err.errno == errno.EISDIR:
        return "expected a file, found a directory"
    if err.errno == errno.ELOOP:
        return "expected a file, found a symlink loop (too many levels of symbolic links)"
    if err.errno == errno.ENOTDIR:
        return "expected an existing file, found a path through a file (not a folder)"
    return f"expected a readable file, found {describe_os_error(err)}"


def read_bytes(path: str | Path) -> bytes:
    """A file's bytes, or a one-line `InputError` saying why they cannot be read."""
    path = Path(path)
    try:
        return path.read_bytes()
    except OSError as err:
        raise InputError(path, None, read_error_message(path, err)) from None


def load_text(path: str | Path, encoding: str | None = None) -> TextFile:
    """Read and decode a text file: UTF-8 (BOM optional), else ISO-8859-1, or `encoding` if given."""
    path = Path(path)
    data = read_bytes(path)
    if not data.strip():
        raise InputError(path, None, "expected text lines, found an empty file")
    text, used = decode_bytes(path, data, encoding)
    if not text.strip(" \t\r\n"):
        raise InputError(path, None, "expected text lines, found an empty file (only a byte-order mark)")
    return TextFile(path, split_lines(text), used)
