"""The rows of the paper's Tables 2–4 as named variants, and which models each one needs.

A variant is either one of the teacher models applied directly to the target test set, or a student
distilled on unlabelled target text with a given choice of soft and hard labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from unitrans.errors import UnitransError

TEACHERS = ("src", "teach", "trans")
"""The three models whose probabilities the student learns from (voting needs all three)."""


@dataclass(frozen=True)
class Variant:
    """One row of the paper's tables."""

    name: str
    title: str
    model: str | None = None
    """For a model variant: which trained model predicts the test set (src, trans, teach, combo)."""
    soft_teacher: str | None = None
    """For a student: whose probabilities are the soft labels (None = no soft loss)."""
    hard: bool = False
    """For a student: whether it learns from the voted hard labels (η·L_hard)."""
    ensemble: bool = False
    """For a student: teachers are averages over M seeds (Eq. 14)."""

    @property
    def is_student(self) -> bool:
        return self.model is None

    def models(self) -> tuple[str, ...]:
        """The trained models this variant needs."""
        if self.model is not None:
            return (self.model,)
        needed = set(TEACHERS) if self.hard else set()
        if self.soft_teacher:
            needed.add(self.soft_teacher)
        return tuple(m for m in ("src", "teach", "trans") if m in needed)


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("src", "Model transfer (Θsrc)", model="src"),
        Variant("trans", "Data transfer (Θtrans)", model="trans"),
        Variant("data-combination", "Data combination (source ∪ D_trans)", model="combo"),
        Variant("teach", "UniTrans w/o D_T (Θteach)", model="teach"),
        Variant("unitrans", "UniTrans", soft_teacher="teach", hard=True),
        Variant("no-soft", "UniTrans w/o soft labels", hard=True),
        Variant("no-hard", "UniTrans w/o hard labels (η = 0)", soft_teacher="teach"),
        Variant("teacher-src", "Student of Θsrc (soft only)", soft_teacher="src"),
        Variant("teacher-trans", "Student of Θtrans (soft only)", soft_teacher="trans"),
        Variant("ensemble", "UniTrans, ensemble teachers", soft_teacher="teach", hard=True, ensemble=True),
    )
}

MODEL_TITLES = {
    "src": "Θsrc",
    "trans": "Θtrans",
    "teach": "Θteach",
    "combo": "data combination",
}


def check_variants(names: Iterable[str]) -> tuple[str, ...]:
    """Validate variant names (raises a user error naming the valid ones); keeps order, drops repeats."""
    out: list[str] = []
    for name in names:
        if name not in VARIANTS:
            raise UnitransError(f"expected a variant among {', '.join(VARIANTS)}, found {name!r}")
        if name not in out:
            out.append(name)
    if not out:
        raise UnitransError("expected at least one variant")
    return tuple(out)


def required_models(names: Sequence[str]) -> tuple[str, ...]:
    """All trained models the variants need, teach implying src (Θteach starts from Θsrc)."""
    needed: set[str] = set()
    for name in names:
        needed.update(VARIANTS[name].models())
    if "teach" in needed:
        needed.add("src")
    return tuple(m for m in ("src", "trans", "teach", "combo") if m in needed)


def round_row(name: str, round_: int, rounds: int) -> str:
    """The report row of a student variant's round: the last round keeps the variant's own name (it is
    the one `unitrans run` exports), earlier ones are `<name>-r<round>`."""
    return name if round_ == rounds else f"{name}-r{round_}"


def report_rows(names: Sequence[str], rounds: int) -> list[tuple[str, str, int]]:
    """(row, variant, round) of every report row: a model variant once, a student variant once per
    self-training round (round 1 first, so the table reads as what each round adds)."""
    rows = []
    for name in names:
        last = rounds if VARIANTS[name].is_student else 1
        rows += [(round_row(name, r, last), name, r) for r in range(1, last + 1)]
    return rows


def row_title(row: str, variant: str, round_: int, rounds: int) -> str:
    """A row's title: the variant's, with the round when a student has several."""
    v = VARIANTS[variant]
    if not v.is_student or rounds == 1:
        return v.title
    return f"{v.title} ({rounds} rounds)" if row == variant else f"{v.title}, round {round_}"


def paper_variant(variant: str, round_: int) -> str | None:
    """Which of the paper's rows a report row reproduces: round 1 of a student is the published method,
    later rounds have no paper figure."""
    return variant if round_ == 1 else None
