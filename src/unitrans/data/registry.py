"""The benchmark data sets: where they live, what they must contain, and per-file statistics.

The expected counts are those of `../shared/data/conll/README.md` (the paper's Table 1): sentences
are blank-line blocks with -DOCSTART- blocks included, entities are B- tags. The readers drop
-DOCSTART- blocks, so the statistics carry both counts and the check compares the README's own one.
"""

from __future__ import annotations

import errno
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from unitrans.data.conll import read_conll_file
from unitrans.data.schemes import CONLL_TYPES
from unitrans.errors import UnitransError

BENCHMARK_LANGUAGES: tuple[str, ...] = ("en", "de", "es", "nl", "no")
SPLITS: tuple[str, ...] = ("train", "dev", "test")
DATA_DIR_ENV = "UNITRANS_DATA_DIR"
DEFAULT_DATA_DIR = Path("..") / "shared" / "data" / "conll"


@dataclass(frozen=True)
class Expected:
    """Published counts for one split: blank-line blocks and B- tags."""

    blocks: int
    entities: int


def _table(rows: dict[str, tuple[int, int, int, int, int, int]]) -> dict[str, dict[str, Expected]]:
    return {
        lang: {split: Expected(r[i], r[i + 3]) for i, split in enumerate(SPLITS)} for lang, r in rows.items()
    }


# lang: (train sents, dev sents, test sents, train ents, dev ents, test ents), as in the data README.
EXPECTED_COUNTS: dict[str, dict[str, Expected]] = _table(
    {
        "en": (14_987, 3_466, 3_684, 23_499, 5_942, 5_648),
        "de": (12_705, 3_068, 3_160, 11_851, 4_833, 3_673),
        "es": (8_323, 1_915, 1_517, 18_798, 4_351, 3_558),
        "nl": (15_806, 2_895, 5_195, 13_344, 2_616, 3_941),
        "no": (15_695, 2_410, 1_938, 10_923, 1_635, 1_390),
    }
)


def default_data_dir() -> Path:
    """$UNITRANS_DATA_DIR if set, else ../shared/data/conll relative to the working directory."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else DEFAULT_DATA_DIR


def benchmark_split_path(data_dir: str | Path, lang: str, split: str) -> Path:
    """`<data_dir>/<lang>/<split>.txt`, or a UnitransError naming the missing path."""
    if split not in SPLITS:
        raise UnitransError(f"expected a split among {', '.join(SPLITS)}, found {split!r}")
    path = Path(data_dir) / lang / f"{split}.txt"
    if not path.is_file():
        found = "no such file"
        try:
            path.stat()
            found = "a directory" if path.is_dir() else "no regular file"
        except OSError as err:  # is_file() says False for a symlink loop too: name it
            if err.errno == errno.ELOOP:
                found = "a symlink loop (too many levels of symbolic links)"
        raise UnitransError(
            f"{path}: expected the {split} split of language {lang!r} here, found {found} "
            f"(point --data-dir or ${DATA_DIR_ENV} at a folder holding <lang>/{{train,dev,test}}.txt)"
        )
    return path


def has_split(data_dir: str | Path, lang: str, split: str) -> bool:
    """Whether the split exists (dev is optional for user-supplied languages)."""
    return (Path(data_dir) / lang / f"{split}.txt").is_file()


def available_languages(data_dir: str | Path) -> list[str]:
    """Language folders usable as data sets: those holding train.txt and test.txt."""
    root = Path(data_dir)
    if not root.is_dir():
        raise UnitransError(f"{root}: expected a data folder with <lang>/{{train,dev,test}}.txt, found none")
    return sorted(
        p.name for p in root.iterdir() if (p / "train.txt").is_file() and (p / "test.txt").is_file()
    )


@dataclass(frozen=True)
class SplitStats:
    """Counts for one labelled file."""

    path: Path
    blocks: int
    docstart_blocks: int
    sentences: int
    tokens: int
    entities: dict[str, int] = field(default_factory=dict)
    scheme: str = "IOB2"
    encoding: str = "utf-8"
    columns: int = 2

    @property
    def total_entities(self) -> int:
        return sum(self.entities.values())


def split_stats(
    path: str | Path, *, tag_column: int = -1, encoding: str | None = None, scheme: str = "auto"
) -> SplitStats:
    """Read a labelled file and count blocks, sentences, tokens and entities (B- tags) per type."""
    f = read_conll_file(path, tag_column=tag_column, encoding=encoding, scheme=scheme)
    entities: Counter[str] = Counter(
        tag[2:] for s in f.sentences for tag in s.tags or () if tag.startswith("B-")
    )
    ordered = {t: entities.get(t, 0) for t in CONLL_TYPES} | dict(sorted(entities.items()))
    return SplitStats(
        path=f.path,
        blocks=f.n_blocks,
        docstart_blocks=f.n_docstart_blocks,
        sentences=len(f.sentences),
        tokens=sum(len(s) for s in f.sentences),
        entities=ordered,
        scheme=f.scheme,
        encoding=f.encoding,
        columns=f.columns,
    )


@dataclass(frozen=True)
class CheckRow:
    """One split of the benchmark: its statistics (None when missing) against the expected counts."""

    lang: str
    split: str
    expected: Expected
    stats: SplitStats | None

    @property
    def problems(self) -> list[str]:
        if self.stats is None:
            return ["missing"]
        found = []
        if self.stats.blocks != self.expected.blocks:
            found.append(f"blocks {self.stats.blocks:,} != {self.expected.blocks:,}")
        if self.stats.total_entities != self.expected.entities:
            found.append(f"entities {self.stats.total_entities:,} != {self.expected.entities:,}")
        return found


def check_benchmarks(
    data_dir: str | Path, languages: tuple[str, ...] = BENCHMARK_LANGUAGES
) -> list[CheckRow]:
    """Statistics of every benchmark split, compared with the published counts."""
    root = Path(data_dir)
    if not root.is_dir():
        raise UnitransError(
            f"{root}: expected the benchmark data folder (<lang>/{{train,dev,test}}.txt), "
            f"found no such folder (use --data-dir or ${DATA_DIR_ENV})"
        )
    rows = []
    for lang in languages:
        for split in SPLITS:
            path = root / lang / f"{split}.txt"
            stats = split_stats(path) if path.is_file() else None
            rows.append(CheckRow(lang, split, EXPECTED_COUNTS[lang][split], stats))
    return rows


def format_stats_table(
    rows: list[tuple[str, SplitStats]], expected: list[Expected | None] | None = None
) -> str:
    """A fixed-width table: name, blocks, sentences, tokens, entities per type, total."""
    types = list(dict.fromkeys(t for _, s in rows for t in s.entities)) or list(CONLL_TYPES)
    head = ["", "blocks", "docstart", "sentences", "tokens", *types, "entities"]
    if expected is not None:
        head += ["expected blocks", "expected ents", "status"]
    body = []
    for i, (name, s) in enumerate(rows):
        cells = [name, s.blocks, s.docstart_blocks, s.sentences, s.tokens]
        cells += [s.entities.get(t, 0) for t in types] + [s.total_entities]
        if expected is not None:
            exp = expected[i]
            ok = exp is not None and (s.blocks, s.total_entities) == (exp.blocks, exp.entities)
            cells += [exp.blocks if exp else "-", exp.entities if exp else "-", "ok" if ok else "MISMATCH"]
        body.append([f"{c:,}" if isinstance(c, int) else str(c) for c in cells])
    widths = [max(len(str(h)), *(len(r[j]) for r in body)) for j, h in enumerate(head)]
    fmt = [h.ljust(widths[0]) if j == 0 else h.rjust(widths[j]) for j, h in enumerate(head)]
    lines = ["  ".join(fmt)]
    for r in body:
        lines.append("  ".join(c.ljust(widths[0]) if j == 0 else c.rjust(widths[j]) for j, c in enumerate(r)))
    return "\n".join(lines)
