"""Debian's FreeDict dictionaries (`apt-get install dict-freedict-eng-spa`) as MUSE `source target` pairs.

A FreeDict package installs `/usr/share/dictd/freedict-eng-spa.index` (`headword<TAB>offset<TAB>length`
per line, offsets and lengths in dictd's base 64) and `freedict-eng-spa.dict.dz` (dictzip: gzip-readable),
whose entries are a headword line followed by sense lines. Only single-word pairs are kept: a one-word
headword and one-word translations from the entry's numbered sense lines, or its first content line when
it has none; annotations (<fem>, [med.], (...)) are removed, both sides lowercased and NFKC-normalized
(FreeDict's Dutch writes the ligature "ĳ").

The first translation of a word is the one `--dictionary` uses, so order matters. FreeDict indexes a
multi-word expression under its first word, its spaces lost ("bank" -> "billetedebanco", for "bank note",
before "bank" -> "banco, escaño"), and capitalised names under their lowercase form ("The" -> "LaHaya").
A word's entries are therefore ordered lowercase headwords first, then by the length of the entry's
pronunciation (the word alone has the shortest: /bæŋk/, not /bæŋkəkaunt/), then as indexed; within an
entry translations keep their order. On eng-spa this changes the first translation of 85 of 4,926 words,
by inspection of a sample almost always for the better (bank: banco, the: el, sea: mar, not foca).

The same reader builds the FreeDict test dictionaries of the P@1 benchmarks (benchmarks/README.md): a
dictionary used for `--dictionary` must never also be the one that scores the lexicon.
"""

from __future__ import annotations

import gzip
import re
import unicodedata
import zlib
from pathlib import Path

from unitrans.atomic import write_text_atomic
from unitrans.data.textfile import load_text
from unitrans.errors import InputError, UnitransError

DICTD = Path("/usr/share/dictd")
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
ANNOTATION = re.compile(r"<[^>]*>|\[[^\]]*\]|\([^)]*\)|\{[^}]*\}")
NUMBERED = re.compile(r"^\d+\.\s*")
PRONUNCIATION = re.compile(r"/([^/]*)/")
WORD = re.compile(r"^[^\W\d_](?:[\w'’-]*\w)?$")


def b64_number(text: str) -> int:
    """dictd's base-64 numbers (no padding, most significant digit first); ValueError if not one."""
    if not text:
        raise ValueError("empty number")
    value = 0
    for ch in text:
        value = value * 64 + B64.index(ch)
    return value


def clean(word: str) -> str:
    return unicodedata.normalize("NFKC", word).strip().lower()


def sense_lines(body: str) -> list[str]:
    """Translation lines of one entry: numbered sense lines if any, else the first content line."""
    lines = body.split("\n")[1:]  # the first line is the headword and its pronunciation
    content = [ln for ln in lines if ln.strip() and not ln.startswith((" ", "\t"))]
    numbered = [NUMBERED.sub("", ln) for ln in content if NUMBERED.match(ln)]
    return numbered or content[:1]


def translations(body: str) -> list[str]:
    """One-word translations of one entry, in the entry's order, without repeats."""
    out: dict[str, None] = {}
    for line in sense_lines(body):
        for part in ANNOTATION.sub(" ", line).replace(";", ",").split(","):
            word = clean(re.sub(r"\s\d+\.$", "", part.strip()))
            if WORD.match(word):
                out[word] = None
    return list(out)


def package_files(package: str, dictd: Path = DICTD) -> tuple[Path, Path]:
    """(index, data) of an installed package: `eng-spa`, `freedict-eng-spa` or `dict-freedict-eng-spa`."""
    name = package.removeprefix("dict-").removeprefix("freedict-")
    index, data = dictd / f"freedict-{name}.index", dictd / f"freedict-{name}.dict.dz"
    if not index.is_file() or not data.is_file():
        raise UnitransError(
            f"expected {index} and {data}, found none: install them with "
            f"`apt-get update && apt-get install dict-freedict-{name}`"
        )
    return index, data


def read_freedict(index: Path, data: Path) -> dict[str, list[str]]:
    """headword -> its one-word translations, best first (see the module docstring), in index order."""
    try:
        with gzip.open(data) as fh:
            raw = fh.read()
    except (OSError, EOFError, zlib.error) as err:
        raise InputError(data, None, f"expected a dictzip/gzip file, found unreadable data ({err})") from None
    entries: dict[str, list[tuple[bool, int, int, list[str]]]] = {}
    for line_no, line in enumerate(load_text(index).lines, start=1):
        fields = line.split("\t")
        try:
            head, offset, length = fields[0], b64_number(fields[1]), b64_number(fields[2])
        except (IndexError, ValueError):
            raise InputError(index, line_no, "expected `headword<TAB>offset<TAB>length` (base 64)") from None
        word = clean(head)
        if head.startswith("00database") or not WORD.match(word):
            continue
        if offset + length > len(raw):
            raise InputError(index, line_no, f"entry beyond the end of {data.name} ({len(raw)} bytes)")
        body = raw[offset : offset + length].decode("utf-8", "replace")
        found = translations(body)
        if found:
            sound = PRONUNCIATION.search(body.split("\n", 1)[0])
            rank = (head != head.lower(), len(sound.group(1)) if sound else len(body), line_no, found)
            entries.setdefault(word, []).append(rank)
    pairs: dict[str, list[str]] = {}
    for word, ranked in entries.items():
        ordered = dict.fromkeys(t for *_, found in sorted(ranked) for t in found)
        pairs[word] = list(ordered)
    return pairs


def write_pairs(path: Path, pairs: dict[str, list[str]]) -> int:
    """MUSE `source target` lines, sources sorted, each source's translations in entry order; atomically.
    Returns the number of lines."""
    lines = [f"{s} {t}\n" for s in sorted(pairs) for t in pairs[s]]
    write_text_atomic(path, "".join(lines))
    return len(lines)
