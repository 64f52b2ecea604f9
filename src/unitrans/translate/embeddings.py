"""Static word embeddings: the in-memory type, fastText/word2vec `.vec` text files, the cache format.

The `.vec` reader is written here (gensim is not a dependency and MUSE's reader is not a library) so
that a malformed line is reported as `FILE:LINE` instead of a numpy traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from unitrans.atomic import atomic_path
from unitrans.errors import InputError, UnitransError

DEFAULT_MAX_VOCAB = 200_000
NORMALIZATIONS = ("", "center", "renorm", "center,renorm", "renorm,center,renorm")


@dataclass(frozen=True)
class WordEmbeddings:
    """Word vectors in frequency order (most frequent first), as fastText ships them."""

    words: tuple[str, ...]
    vectors: np.ndarray  # (n, dim) float32
    counts: np.ndarray | None = None  # corpus frequency of each word, when known

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.words):
            raise ValueError(f"{len(self.words)} words but vectors of shape {self.vectors.shape}")

    def __len__(self) -> int:
        return len(self.words)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}

    def normalized(self, how: str) -> WordEmbeddings:
        return WordEmbeddings(self.words, normalize(self.vectors, how), self.counts)


def normalize(vectors: np.ndarray, how: str) -> np.ndarray:
    """MUSE's `normalize_embeddings`: comma-separated steps among `center` and `renorm`, applied in order."""
    out = vectors.astype(np.float32, copy=True)
    for step in filter(None, (s.strip() for s in how.split(","))):
        if step == "center":
            out -= out.mean(axis=0, keepdims=True)
        elif step == "renorm":
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        else:
            raise UnitransError(f"unknown normalization step {step!r}: expected 'center' or 'renorm'")
    return out


def load_vec(
    path: str | Path, *, max_vocab: int = DEFAULT_MAX_VOCAB, encoding: str = "utf-8"
) -> WordEmbeddings:
    """Read a fastText/word2vec text file: a `COUNT DIM` header, then `word v1 ... vDIM` per line.

    Keeps the first `max_vocab` words (the file's frequency order); a repeated word keeps its first
    vector, as MUSE does. Any line without exactly DIM numbers raises InputError with its line number.
    """
    path = Path(path)
    if not path.is_file():
        raise UnitransError(f"{path}: embedding file not found")
    words: list[str] = []
    seen: set[str] = set()
    rows: list[np.ndarray] = []
    with path.open(encoding=encoding, errors="strict") as fh:
        try:
            header = fh.readline()
        except UnicodeDecodeError as err:
            raise InputError(path, 1, f"not {encoding} text ({err.reason})") from None
        fields = header.split()
        if len(fields) != 2 or not all(f.isdigit() for f in fields):
            raise InputError(path, 1, f"expected a header 'COUNT DIM', found {header.strip()[:60]!r}")
        dim = int(fields[1])
        line_no = 1
        while len(words) < max_vocab:
            line_no += 1
            try:
                line = fh.readline()
            except UnicodeDecodeError as err:
                raise InputError(path, line_no, f"not {encoding} text ({err.reason})") from None
            if not line:
                break
            word, _, rest = line.rstrip("\r\n").rstrip(" ").partition(" ")
            try:
                vec = np.array(rest.split(" "), dtype=np.float32) if rest else np.empty(0, np.float32)
            except ValueError:
                raise InputError(path, line_no, f"expected '{word} ' followed by {dim} numbers") from None
            if not word or vec.shape[0] != dim:
                raise InputError(
                    path, line_no, f"expected a word and {dim} numbers, found {vec.shape[0]} numbers"
                )
            if word in seen:
                continue
            seen.add(word)
            words.append(word)
            rows.append(vec)
    if not words:
        raise InputError(path, line_no, "no word vectors after the header")
    return WordEmbeddings(tuple(words), np.stack(rows))


def write_vec(path: str | Path, emb: WordEmbeddings) -> None:
    """Write fastText text format atomically (e.g. to reuse encoder-derived vectors elsewhere)."""
    lines = [f"{len(emb)} {emb.dim}\n"]
    lines += [
        w + " " + " ".join(f"{x:.5f}" for x in v) + "\n" for w, v in zip(emb.words, emb.vectors, strict=True)
    ]
    _atomic_write(Path(path), lambda fh: fh.write("".join(lines).encode("utf-8")))


def save_npz(path: Path, embeddings: dict[str, WordEmbeddings]) -> None:
    """Cache several embedding sets sharing one vocabulary (e.g. one per encoder layer), atomically."""
    first = next(iter(embeddings.values()))
    arrays: dict[str, np.ndarray] = {"words": np.array(first.words, dtype=object).astype(str)}
    if first.counts is not None:
        arrays["counts"] = first.counts
    for name, emb in embeddings.items():
        if emb.words != first.words:
            raise ValueError("all embedding sets in one cache file must share the vocabulary")
        arrays[f"vec_{name}"] = emb.vectors.astype(np.float16)
    _atomic_write(path, lambda fh: np.savez(fh, **arrays))


def load_npz(path: Path) -> dict[str, WordEmbeddings]:
    with np.load(path, allow_pickle=False) as data:
        words = tuple(str(w) for w in data["words"])
        counts = data["counts"] if "counts" in data.files else None
        return {
            name[4:]: WordEmbeddings(words, data[name].astype(np.float32), counts)
            for name in data.files
            if name.startswith("vec_")
        }


def _atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """`write(handle)` into a temporary sibling renamed onto `path`, with the umask's mode (not 0600)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        write(fh)


def restrict(emb: WordEmbeddings, keep: Sequence[int]) -> WordEmbeddings:
    idx = np.asarray(keep, dtype=np.int64)
    counts = None if emb.counts is None else emb.counts[idx]
    return WordEmbeddings(tuple(emb.words[i] for i in idx), emb.vectors[idx], counts)
