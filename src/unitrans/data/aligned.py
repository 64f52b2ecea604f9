"""Read gold and predicted tags for scoring, and make sure they describe the same tokens.

Accepted layouts:
- two files, `--gold G --pred P`: each a CoNLL column file; the gold tag is G's last column, the
  predicted tag is P's last column (so P may be `word PRED`, `word GOLD PRED`, or any column file);
- one file, `--pred P` alone: conlleval's layout `word ... GOLD PRED`, gold in the second-to-last column.
Both files must hold the same words in the same sentences; the first difference is reported with its
line. Tags are read like any labelled file: IOB1/BIOES are converted to IOB2, IOB2 is kept as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from unitrans.data.conll import ConllFile, read_conll_file
from unitrans.errors import InputError


@dataclass(frozen=True)
class AlignedTags:
    """Gold and predicted tag sequences over the same sentences."""

    gold: list[list[str]]
    pred: list[list[str]]
    tokens: int


def _check_same_tokens(gold: ConllFile, pred: ConllFile) -> None:
    for g, p in zip(gold.sentences, pred.sentences, strict=False):
        for j in range(max(len(g), len(p))):
            g_word = g.words[j] if j < len(g) else None
            p_word = p.words[j] if j < len(p) else None
            if g_word == p_word:
                continue
            if g_word is None:
                expected = f"the end of the sentence as at {gold.path}:{g.line + len(g)}"
            else:
                expected = f"the word {g_word!r} as at {gold.path}:{g.line + j}"
            found = f"the word {p_word!r}" if p_word is not None else "the end of the sentence"
            raise InputError(pred.path, p.line + min(j, len(p)), f"expected {expected}, found {found}")
    if len(gold.sentences) != len(pred.sentences):
        last = pred.sentences[-1] if pred.sentences else None
        line = last.line + len(last) if last is not None else None
        raise InputError(
            pred.path,
            line,
            f"expected {len(gold.sentences)} sentences as in {gold.path}, found {len(pred.sentences)}",
        )


def read_aligned(
    gold_path: str | Path | None,
    pred_path: str | Path,
    *,
    encoding: str | None = None,
    scheme: str = "auto",
) -> AlignedTags:
    """Gold and predicted tags for `entity_scores`; `gold_path=None` reads both from `pred_path`."""
    pred = read_conll_file(pred_path, tag_column=-1, encoding=encoding, scheme=scheme)
    if gold_path is None:
        if pred.columns < 3:
            raise InputError(
                pred.path,
                pred.sentences[0].line,
                f"expected `word ... GOLD PRED` columns when no --gold file is given, found {pred.columns}",
            )
        gold = read_conll_file(pred_path, tag_column=-2, encoding=encoding, scheme=scheme)
    else:
        gold = read_conll_file(gold_path, tag_column=-1, encoding=encoding, scheme=scheme)
        _check_same_tokens(gold, pred)
    return AlignedTags(
        gold=[list(s.tags or ()) for s in gold.sentences],
        pred=[list(s.tags or ()) for s in pred.sentences],
        tokens=sum(len(s) for s in gold.sentences),
    )
