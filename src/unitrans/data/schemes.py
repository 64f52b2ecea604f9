"""Tag schemes: parsing, detection, conversion to IOB2, and the IOB2 validity table.

The IOB2 rules live in one data table (`IOB2_RULES`, written the way seqeval describes its schemes:
which prefixes open an entity and which (previous, current) prefix pairs continue one). Both the
constrained Viterbi decoder (`allowed_transitions`) and the strict metric (`strict_entities`) are
derived from it, so decoding and scoring can never disagree about what a valid sequence is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONLL_TYPES: tuple[str, ...] = ("LOC", "MISC", "ORG", "PER")
CONLL_LABELS: tuple[str, ...] = (
    *(f"B-{t}" for t in CONLL_TYPES),
    *(f"I-{t}" for t in CONLL_TYPES),
    "O",
)
SCHEMES: tuple[str, ...] = ("IOB1", "IOB2", "BIOES")
OUTSIDE = "O"
DOCSTART = "-DOCSTART-"
# What the other columns of a document-marker line hold: `-DOCSTART- -X- -X- O` (CoNLL-2003),
# `-DOCSTART- -DOCSTART- O` (CoNLL-2002 Dutch), `-DOCSTART- O`.
_DOCSTART_COLUMNS = frozenset({DOCSTART, "-X-", OUTSIDE})


@dataclass(frozen=True)
class SchemeRules:
    """What makes a tag sequence valid: a tag is valid when it is O, opens an entity, or continues
    the previous tag's entity of the same type. The sentence start behaves like a preceding O."""

    name: str
    prefixes: frozenset[str]
    opens: frozenset[str]
    continues: frozenset[tuple[str, str]]


IOB2_RULES = SchemeRules(
    name="IOB2",
    prefixes=frozenset({"B", "I"}),
    opens=frozenset({"B"}),
    continues=frozenset({("B", "I"), ("I", "I")}),
)

# Prefixes each scheme may use besides O (validation of input files).
SCHEME_PREFIXES: dict[str, frozenset[str]] = {
    "IOB1": frozenset({"B", "I"}),
    "IOB2": frozenset({"B", "I"}),
    "BIOES": frozenset({"B", "I", "E", "S"}),
}


def parse_tag(tag: str) -> tuple[str, str]:
    """Split `B-PER` into ("B", "PER"); `O` gives ("O", ""). Raises ValueError on anything else."""
    if tag == OUTSIDE:
        return OUTSIDE, ""
    prefix, sep, kind = tag.partition("-")
    if not sep or prefix not in ("B", "I", "E", "S") or not kind or kind.strip("-") != kind:
        raise ValueError(f"expected a tag like O, B-PER or I-LOC, found {tag!r}")
    return prefix, kind


def is_docstart(fields: Sequence[str], *, columns: bool) -> bool:
    """Whether a line's fields are a document marker, the only line a reader may skip.

    `-DOCSTART-` alone always is; in column files it may be followed by the marker's usual columns
    (-X-, -DOCSTART-, O). Anything else (`-DOCSTART- Madrid is nice` in plain text) is words to keep.
    """
    if not fields or fields[0] != DOCSTART:
        return False
    return len(fields) == 1 or (columns and all(f in _DOCSTART_COLUMNS for f in fields[1:]))


def continues(rules: SchemeRules, prev: str, tag: str) -> bool:
    """Whether `tag` continues the entity that `prev` belongs to (same type, allowed prefix pair)."""
    p_prefix, p_kind = parse_tag(prev)
    prefix, kind = parse_tag(tag)
    return (p_prefix, prefix) in rules.continues and p_kind == kind


def is_valid_step(rules: SchemeRules, prev: str, tag: str) -> bool:
    """Whether `tag` may follow `prev` (use prev="O" at a sentence start)."""
    prefix, _ = parse_tag(tag)
    return prefix == OUTSIDE or prefix in rules.opens or continues(rules, prev, tag)


def allowed_transitions(labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (L,) start mask and (L, L) [prev, next] transition mask for valid IOB2 decoding."""
    for label in labels:
        prefix, _ = parse_tag(label)
        if prefix not in IOB2_RULES.prefixes | {OUTSIDE}:
            raise ValueError(f"expected IOB2 labels (B-, I-, O), found {label!r}")
    start = np.array([is_valid_step(IOB2_RULES, OUTSIDE, t) for t in labels], dtype=bool)
    trans = np.array([[is_valid_step(IOB2_RULES, p, t) for t in labels] for p in labels], dtype=bool)
    return start, trans


def strict_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entities (type, start, end inclusive) of a valid IOB2 reading: an opening tag followed by
    continuing tags; tags that neither open nor continue an entity belong to none (seqeval strict)."""
    entities: list[tuple[str, int, int]] = []
    i = 0
    while i < len(tags):
        prefix, kind = parse_tag(tags[i])
        if prefix not in IOB2_RULES.opens:
            i += 1
            continue
        end = i
        while end + 1 < len(tags) and continues(IOB2_RULES, tags[end], tags[end + 1]):
            end += 1
        entities.append((kind, i, end))
        i = end + 1
    return entities


def detect_scheme(sentences: Sequence[Sequence[str]]) -> str:
    """Guess IOB1, IOB2 or BIOES from the tags of a whole file.

    E-/S- prefixes mean BIOES. IOB1 opens entities with I- and uses B- only between two adjacent
    entities of one type, IOB2 opens them with B-; real files have a few annotation slips either way
    (the German originals hold a B- after another type), so the majority decides: more entities
    opened by I- than by B- means IOB1. IOB2 files with a few ill-formed I- tags stay IOB2 and are
    passed through unchanged.
    """
    i_opens = b_opens = 0
    for tags in sentences:
        prev = OUTSIDE
        for tag in tags:
            prefix, kind = parse_tag(tag)
            if prefix in ("E", "S"):
                return "BIOES"
            p_prefix, p_kind = parse_tag(prev)
            after_same = p_prefix != OUTSIDE and p_kind == kind
            if prefix == "I" and not after_same:
                i_opens += 1
            elif prefix == "B" and not after_same:
                b_opens += 1
            prev = tag
    return "IOB1" if i_opens > b_opens else "IOB2"


def to_iob2(tags: Sequence[str], scheme: str) -> list[str]:
    """Convert one sentence's tags from `scheme` to IOB2 (IOB2 input is returned unchanged)."""
    if scheme == "IOB2":
        return list(tags)
    out: list[str] = []
    prev = OUTSIDE
    for tag in tags:
        prefix, kind = parse_tag(tag)
        if scheme == "BIOES":
            new = {"S": f"B-{kind}", "E": f"I-{kind}"}.get(prefix, tag)
        elif scheme == "IOB1":
            p_prefix, p_kind = parse_tag(prev)
            opens = prefix == "I" and (p_prefix == OUTSIDE or p_kind != kind)
            new = f"B-{kind}" if opens else tag
        else:
            raise ValueError(f"expected a scheme in {SCHEMES}, found {scheme!r}")
        out.append(new)
        prev = tag
    return out


def iob2_to_bioes(tags: Sequence[str]) -> list[str]:
    """IOB2 -> BIOES, for tests and users who want to write BIOES."""
    out: list[str] = []
    for i, tag in enumerate(tags):
        prefix, kind = parse_tag(tag)
        nxt = tags[i + 1] if i + 1 < len(tags) else OUTSIDE
        ends = not continues(IOB2_RULES, tag, nxt) if prefix != OUTSIDE else False
        if prefix == "B":
            out.append(f"S-{kind}" if ends else tag)
        elif prefix == "I":
            out.append(f"E-{kind}" if ends else tag)
        else:
            out.append(tag)
    return out
