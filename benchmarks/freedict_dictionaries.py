"""Build MUSE-format test dictionaries (`source target` per line) from Debian's FreeDict packages.

For measuring bilingual lexicon induction only: never a training signal for unitrans.

    apt-get install dict-freedict-eng-spa dict-freedict-eng-nld dict-freedict-eng-deu dict-freedict-eng-nor
    python benchmarks/freedict_dictionaries.py --out-dir /tmp/freedict   # -> en-es.txt, en-nl.txt, ...

The reader is `unitrans.translate.freedict` (also behind `unitrans lexicon from-freedict`): single-word
entries only, annotations removed, both sides lowercased and NFKC-normalized. Here each source's
translations are written sorted, as the benchmark files always were.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unitrans.translate.freedict import package_files, read_freedict, write_pairs

PACKAGES = {"es": "spa", "nl": "nld", "de": "deu", "no": "nor"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--langs", nargs="+", default=list(PACKAGES), choices=list(PACKAGES))
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for lang in args.langs:
        pairs = read_freedict(*package_files(f"eng-{PACKAGES[lang]}"))
        out = args.out_dir / f"en-{lang}.txt"
        lines = write_pairs(out, {s: sorted(t) for s, t in pairs.items()})
        print(f"en-{lang}: {len(pairs)} source words, {lines} pairs -> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
