"""Knowledge distillation of UniTrans (Wu et al., IJCAI 2020): losses (Eqs. 9, 12, 13), teacher voting
(Eqs. 10, 11) and teacher ensembling (Eq. 14).

These are the paper's own equations, so they are written by hand, one named function each, and tested
against direct transcriptions.

Reading of the paper's MSE (Eq. 12): for word x_i, MSE(p_teach(x_i), p_stu(x_i)) compares two vectors of
L label probabilities; we take the *mean* of the L squared differences (as `torch.nn.functional.mse_loss`
does on two length-L vectors), then average over the N words of the sentence:
    L_soft = (1/N) Σ_i (1/L) Σ_c (p_teach(x_i)_c − p_stu(x_i)_c)².
The hard loss (Eq. 13) divides by N, the number of all words, not by the number of words with a hard
label: L_hard = (1/N) Σ_i I(x_i)·CE(ŷ_i, p_stu(x_i)); so a sentence where no word has a hard label gives
exactly 0 (never NaN).

Batches: `train_tagger` hands a `WordLoss` the first-subword logits of a whole batch, flattened. We apply
Eqs. 12–13 to those N words as if they were one sentence, so every word weighs the same; the paper's
Eq. 9 averages per sentence first and then over sentences (`corpus_loss` is that exact form).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

NO_HARD_LABEL = -100
"""Hard-label id of a word the teachers disagree on (I(x_i) = 0); cross-entropy's usual ignore index."""


def soft_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
    """Eq. 12: mean over words of the per-word MSE (mean over L labels) between teacher and student."""
    n = student_logits.shape[0]
    if n == 0:
        return student_logits.sum() * 0.0
    p_stu = torch.softmax(student_logits, dim=-1)
    return ((teacher_probs.to(p_stu.dtype) - p_stu) ** 2).mean(dim=-1).sum() / n


def soft_loss_kl(student_logits: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
    """Beyond the paper: (1/N) Σ_i KL(p_teach(x_i) ‖ p_stu(x_i)), Hinton et al.'s distillation loss at T = 1.

    Its gradient on a word's logits is (p_stu − p_teach)/N, where Eq. 12's MSE gives (2/L)·Σ_c (p_stu,c −
    p_teach,c)·∂p_stu,c/∂z: far smaller, so under MSE the words without a hard label (the teachers
    disagree: mostly entity words) barely constrain the student. Terms with p_teach = 0 contribute 0.
    """
    n = student_logits.shape[0]
    if n == 0:
        return student_logits.sum() * 0.0
    log_p = torch.log_softmax(student_logits, dim=-1)
    p_t = teacher_probs.to(log_p.dtype)
    return (torch.xlogy(p_t, p_t) - p_t * log_p).sum() / n


SOFT_LOSSES = {"mse": soft_loss, "kl": soft_loss_kl}
"""The soft loss by name: `mse` is the paper's Eq. 12, `kl` the distillation loss beyond it."""


def hard_loss(student_logits: torch.Tensor, hard_labels: torch.Tensor) -> torch.Tensor:
    """Eq. 13: (1/N) Σ I(x_i)·CE(ŷ_i, p_stu(x_i)); words with id NO_HARD_LABEL contribute 0."""
    n = student_logits.shape[0]
    if n == 0:
        return student_logits.sum() * 0.0
    mask = hard_labels != NO_HARD_LABEL
    log_p = torch.log_softmax(student_logits, dim=-1)
    safe = torch.where(mask, hard_labels, torch.zeros_like(hard_labels))
    nll = -log_p.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return (nll * mask.to(nll.dtype)).sum() / n


def sentence_loss(
    student_logits: torch.Tensor,
    hard_labels: torch.Tensor,
    teacher_probs: torch.Tensor | None,
    *,
    eta: float = 1.0,
    soft_weight: float = 1.0,
    soft: str = "mse",
) -> torch.Tensor:
    """The summand of Eq. 9: η·L_hard + L_soft (`soft_weight` = 0 drops L_soft for the no-soft ablation;
    `soft` names L_soft in SOFT_LOSSES)."""
    loss = eta * hard_loss(student_logits, hard_labels)
    if soft_weight:
        if teacher_probs is None:
            raise ValueError("the soft loss needs teacher probabilities")
        loss = loss + soft_weight * SOFT_LOSSES[soft](student_logits, teacher_probs)
    return loss


def corpus_loss(
    sentences: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]],
    *,
    eta: float = 1.0,
    soft_weight: float = 1.0,
) -> torch.Tensor:
    """Eq. 9: (1/|D_T|) Σ_x (η·L_hard(x) + L_soft(x)) over (logits, hard labels, teacher probs) triples."""
    if not sentences:
        raise ValueError("no sentences")
    losses = [sentence_loss(lg, hd, sf, eta=eta, soft_weight=soft_weight) for lg, hd, sf in sentences]
    return torch.stack(losses).mean()


@dataclass(frozen=True)
class DistillLoss:
    """The student's `WordLoss` for `train_tagger`: Eq. 9 on the words of a batch.

    `eta` weighs the hard loss (η = 0 is the no-hard ablation); `soft_weight` = 0 is the no-soft one;
    `soft` is the soft loss's name in SOFT_LOSSES (the paper's `mse` by default).
    """

    eta: float = 1.0
    soft_weight: float = 1.0
    soft: str = "mse"
    divides_by: ClassVar[str] = "words"
    """Both losses are sums over the batch's words divided by their number (`train.parts` shares them)."""

    def __post_init__(self) -> None:
        if self.soft not in SOFT_LOSSES:
            raise ValueError(f"soft loss must be one of {', '.join(SOFT_LOSSES)}, got {self.soft!r}")
        if self.eta < 0 or self.soft_weight < 0:
            raise ValueError(f"loss weights must be ≥ 0, got eta={self.eta}, soft_weight={self.soft_weight}")
        if self.eta == 0 and self.soft_weight == 0:
            raise ValueError("eta and soft_weight are both 0: nothing to learn from")

    def __call__(self, logits: torch.Tensor, hard: torch.Tensor, soft: torch.Tensor | None) -> torch.Tensor:
        return sentence_loss(logits, hard, soft, eta=self.eta, soft_weight=self.soft_weight, soft=self.soft)


def vote_hard_labels(
    p_src: Sequence[np.ndarray], p_teach: Sequence[np.ndarray], p_trans: Sequence[np.ndarray]
) -> list[np.ndarray]:
    """Eqs. 10–11: ŷ = argmax p_teach where the argmaxes of Θsrc, Θteach, Θtrans agree, else NO_HARD_LABEL.

    Takes per-sentence (n_words, L) probability matrices; returns per-sentence int64 arrays.
    """
    return agreement_votes([p_src, p_teach, p_trans])


def agreement_votes(voters: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
    """Eqs. 10–11 for any number of voters: a word's hard label is the argmax every voter gives it, else
    NO_HARD_LABEL. Self-training rounds add the previous round's student as a fourth voter.

    `voters[j][i]` is voter j's (n_words, L) probability matrix for sentence i.
    """
    if not voters:
        raise ValueError("no voters")
    n = len(voters[0])
    if any(len(v) != n for v in voters):
        raise ValueError(f"sentence counts differ: {', '.join(str(len(v)) for v in voters)}")
    votes = []
    for i in range(n):
        shapes = [v[i].shape for v in voters]
        if any(s != shapes[0] for s in shapes):
            raise ValueError(f"sentence {i}: probability shapes differ: {', '.join(map(str, shapes))}")
        first = voters[0][i].argmax(-1)
        agree = np.ones(first.shape, dtype=bool)
        for v in voters[1:]:
            agree &= v[i].argmax(-1) == first
        votes.append(np.where(agree, first, NO_HARD_LABEL).astype(np.int64))
    return votes


def voting_coverage(hard_labels: Sequence[np.ndarray]) -> float:
    """Share of words that get a hard label (all voters agree); 0 for an empty corpus."""
    total = sum(int(h.size) for h in hard_labels)
    if total == 0:
        return 0.0
    return sum(int((h != NO_HARD_LABEL).sum()) for h in hard_labels) / total


def average_probs(runs: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
    """Eq. 14: the ensemble's per-word probabilities, the mean over M runs (M = len(runs))."""
    if not runs:
        raise ValueError("no runs to average")
    n = len(runs[0])
    if any(len(r) != n for r in runs):
        raise ValueError(f"runs cover different numbers of sentences: {[len(r) for r in runs]}")
    return [np.mean(np.stack([r[i] for r in runs]), axis=0).astype(np.float32) for i in range(n)]
