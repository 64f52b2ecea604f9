"""Entity-level micro precision / recall / F1, overall and per type.

Two readings of a tag sequence:
- "conlleval" (default, what the paper reports): conlleval's chunk rules, so an `I-X` that follows
  `O` or another type opens a chunk; identical to seqeval's default mode.
- "strict": only valid IOB2 entities count (`B-X I-X*`); identical to seqeval's
  `mode="strict", scheme=IOB2`, and derived from the same rule table the Viterbi decoder uses.

seqeval is the reference in the tests, but it is a test dependency only and its per-type report is
not a data structure, so the few lines of counting live here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from unitrans.data.aligned import read_aligned
from unitrans.data.schemes import parse_tag, strict_entities
from unitrans.errors import UnitransError

MODES = ("conlleval", "strict")


@dataclass(frozen=True)
class TypeScore:
    """Micro scores over a set of entities; `support` is the number of gold entities."""

    precision: float
    recall: float
    f1: float
    support: int
    predicted: int
    correct: int

    @classmethod
    def from_counts(cls, correct: int, predicted: int, support: int) -> TypeScore:
        precision = correct / predicted if predicted else 0.0
        recall = correct / support if support else 0.0
        denom = precision + recall
        # Same operation order as seqeval, so results agree to the last bit.
        f1 = 2.0 * precision * recall / denom if denom else 0.0
        return cls(precision, recall, f1, support, predicted, correct)

    def to_dict(self) -> dict[str, float | int]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1, "support": self.support}


@dataclass(frozen=True)
class Scores:
    overall: TypeScore
    per_type: dict[str, TypeScore] = field(default_factory=dict)
    mode: str = "conlleval"
    tokens: int = 0
    pred_only_types: tuple[str, ...] = ()
    """Entity types in the predicted tags but in no gold tag (`evaluate_files` fills it): usually a
    model trained on other labels; scored (their precision is 0) but worth a warning."""

    def to_dict(self) -> dict[str, object]:
        return {
            "overall": self.overall.to_dict(),
            "per_type": {name: s.to_dict() for name, s in self.per_type.items()},
        }

    def format_table(self) -> str:
        """A conlleval-like report; percentages with two decimals."""
        o = self.overall
        lines = [
            f"processed {self.tokens} tokens with {o.support} phrases; "
            f"found: {o.predicted} phrases; correct: {o.correct}.  (mode: {self.mode})",
            f"{'':>10}  {'precision':>9}  {'recall':>9}  {'FB1':>9}  {'support':>7}  {'found':>7}",
        ]
        rows = [("overall", o), *self.per_type.items()]
        for name, s in rows:
            lines.append(
                f"{name:>10}  {100 * s.precision:9.2f}  {100 * s.recall:9.2f}  {100 * s.f1:9.2f}  "
                f"{s.support:7d}  {s.predicted:7d}"
            )
        return "\n".join(lines)


def conlleval_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Chunks (type, start, end inclusive) by conlleval's rules for IOB/BIOES-style tags."""
    chunks: list[tuple[str, int, int]] = []
    prev_prefix, prev_type, begin = "O", "", 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, kind = parse_tag(tag)
        ends = prev_prefix in ("E", "S") or (prev_prefix in ("B", "I") and prefix in ("B", "S", "O"))
        if prev_prefix != "O" and prev_type != kind:
            ends = True
        starts = prefix in ("B", "S") or (prev_prefix in ("E", "S", "O") and prefix in ("E", "I"))
        if prefix != "O" and prev_type != kind:
            starts = True
        if ends:
            chunks.append((prev_type, begin, i - 1))
        if starts:
            begin = i
        prev_prefix, prev_type = prefix, kind
    return chunks


def _entities(tags: Sequence[str], mode: str) -> list[tuple[str, int, int]]:
    return conlleval_entities(tags) if mode == "conlleval" else strict_entities(tags)


def entity_scores(
    gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], mode: str = "conlleval"
) -> Scores:
    """Micro P/R/F1 of predicted entities against gold ones, overall and per type."""
    if mode not in MODES:
        raise ValueError(f"expected mode in {MODES}, found {mode!r}")
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted")
    gold_sets: dict[str, set[tuple[int, int, int]]] = {}
    pred_sets: dict[str, set[tuple[int, int, int]]] = {}
    tokens = 0
    for k, (g, p) in enumerate(zip(gold, pred, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sentence {k}: {len(g)} gold tags but {len(p)} predicted")
        tokens += len(g)
        for kind, start, end in _entities(g, mode):
            gold_sets.setdefault(kind, set()).add((k, start, end))
        for kind, start, end in _entities(p, mode):
            pred_sets.setdefault(kind, set()).add((k, start, end))
    per_type: dict[str, TypeScore] = {}
    total_correct = total_pred = total_gold = 0
    for kind in sorted(gold_sets.keys() | pred_sets.keys()):
        g_set, p_set = gold_sets.get(kind, set()), pred_sets.get(kind, set())
        correct = len(g_set & p_set)
        per_type[kind] = TypeScore.from_counts(correct, len(p_set), len(g_set))
        total_correct += correct
        total_pred += len(p_set)
        total_gold += len(g_set)
    overall = TypeScore.from_counts(total_correct, total_pred, total_gold)
    return Scores(overall, per_type, mode, tokens)


def evaluate_files(
    gold_path: str | Path | None,
    pred_path: str | Path,
    *,
    mode: str = "conlleval",
    encoding: str | None = None,
    scheme: str = "auto",
) -> Scores:
    """Score a prediction file against a gold file (layouts in `unitrans.data.aligned`)."""
    if mode not in MODES:
        raise UnitransError(f"expected --mode among {', '.join(MODES)}, found {mode!r}")
    aligned = read_aligned(gold_path, pred_path, encoding=encoding, scheme=scheme)
    scores = entity_scores(aligned.gold, aligned.pred, mode=mode)
    return replace(scores, pred_only_types=tuple(sorted(_types(aligned.pred) - _types(aligned.gold))))


def _types(sentences: Sequence[Sequence[str]]) -> set[str]:
    return {parse_tag(tag)[1] for tags in sentences for tag in tags} - {""}
