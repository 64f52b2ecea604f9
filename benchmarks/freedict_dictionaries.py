"""Build MUSE-format test dictionaries (`source target` per line) from Debian's FreeDict packages.

For measuring bilingual lexicon induction only: never a training signal for unitrans.

    apt-get install dict-freedict-eng-spa dict-freedict-eng-nld dict-freedict-eng-deu dict-freedict-eng-nor
    python benchmarks/freedict_dictionaries.py --out-dir /tmp/freedict   # -> en-es.txt, en-nl.txt, ...

Only single-word entries are kept: a one-word English headword and one-word translations from the
entry's first sense line (or its numbered sense lines); annotations (<fem>, [med.], (...)) are removed,
both sides lowercased and NFKC-normalized (FreeDict's Dutch writes the ligature "ĳ").
"""

from __future__ import annotations

import argparse
import gzip
import re
import sys
import unicodedata
from pathlib import Path

PACKAGES = {"es": "spa", "nl": "nld", "de": "deu", "no": "nor"}
DICTD = Path("/usr/share/dictd")
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
ANNOTATION = re.compile(r"<[^>]*>|\[[^\]]*\]|\([^)]*\)|\{[^}]*\}")
NUMBERED = re.compile(r"^\d+\.\s*")
WORD = re.compile(r"^[^\W\d_](?:[\w'’-]*\w)?$")


def b64_number(text: str) -> int:
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


def translations(body: str) -> set[str]:
    out = set()
    for line in sense_lines(body):
        for part in ANNOTATION.sub(" ", line).replace(";", ",").split(","):
            word = clean(re.sub(r"\s\d+\.$", "", part.strip()))
            if WORD.match(word):
                out.add(word)
    return out


def read_freedict(code: str) -> dict[str, set[str]]:
    index, data = DICTD / f"freedict-eng-{code}.index", DICTD / f"freedict-eng-{code}.dict.dz"
    if not index.is_file() or not data.is_file():
        raise SystemExit(
            f"missing {index} or {data}: install them with "
            f"`apt-get update && apt-get install dict-freedict-eng-{code}`"
        )
    with gzip.open(data) as fh:
        raw = fh.read()
    pairs: dict[str, set[str]] = {}
    for line in index.read_text(encoding="utf-8").splitlines():
        head, offset, length = line.split("\t")[:3]
        word = clean(head)
        if head.startswith("00database") or not WORD.match(word):
            continue
        body = raw[b64_number(offset) : b64_number(offset) + b64_number(length)].decode("utf-8", "replace")
        found = translations(body)
        if found:
            pairs.setdefault(word, set()).update(found)
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--langs", nargs="+", default=list(PACKAGES), choices=list(PACKAGES))
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for lang in args.langs:
        pairs = read_freedict(PACKAGES[lang])
        out = args.out_dir / f"en-{lang}.txt"
        lines = [f"{s} {t}\n" for s in sorted(pairs) for t in sorted(pairs[s])]
        out.write_text("".join(lines), encoding="utf-8")
        print(f"en-{lang}: {len(pairs)} source words, {len(lines)} pairs -> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
