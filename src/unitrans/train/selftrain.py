"""Self-training rounds (issue 15, beyond the paper): who teaches the student of each round.

Round 1 is UniTrans as published: the soft targets are the soft teacher's probabilities (Θteach, or its
M-run average, Eq. 14) and the hard labels are the votes of Θsrc, Θteach and Θtrans (Eqs. 10–11). In round
r + 1 the student of round r joins the teachers: its probabilities on D_T are averaged with the soft
teacher's the way ensemble runs are (an unweighted mean, `average_probs`), and its argmax joins the
agreement vote (`agreement_votes`). Only the latest student joins: it already learned from the earlier
ones, and a vote that grew by one voter per round would lose coverage every round. Each round's student
is trained from the pretrained encoder, like the round-1 student.

The rule is generic in what a "teacher" is: the pipeline applies it to cached stage records, the tests to
probability arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class RoundTeachers(Generic[T]):
    """The teachers of one round's student, by name (names go into cache keys and the report)."""

    soft: dict[str, T]
    """Averaged into the soft targets (Eq. 14's unweighted mean); empty = no soft loss."""
    voters: dict[str, T]
    """Their argmaxes must all agree for a word to get a hard label; empty = no hard loss."""


STUDENT = "student"
"""The name under which the previous round's student teaches (it is in the round's cache keys)."""


def round_teachers(
    soft_teacher: tuple[str, T] | None,
    voters: Sequence[tuple[str, T]],
    previous_student: T | None,
) -> RoundTeachers[T]:
    """The teachers of a round: the variant's own (round 1) plus, from round 2 on, the previous student
    in both the soft mean (when the variant has a soft loss) and the vote (when it has a hard loss)."""
    soft = dict([soft_teacher]) if soft_teacher is not None else {}
    vote = dict(voters)
    if previous_student is not None:
        if soft:
            soft[STUDENT] = previous_student
        if vote:
            vote[STUDENT] = previous_student
    return RoundTeachers(soft, vote)
