"""The distillation losses, voting and ensembling against direct transcriptions of Wu et al. (2020)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unitrans.train.distill import (
    NO_HARD_LABEL,
    DistillLoss,
    average_probs,
    corpus_loss,
    hard_loss,
    sentence_loss,
    soft_loss,
    soft_loss_kl,
    vote_hard_labels,
    voting_coverage,
)


def _softmax(row: list[float]) -> list[float]:
    m = max(row)
    e = [math.exp(v - m) for v in row]
    return [v / sum(e) for v in e]


def _soft_by_hand(logits: torch.Tensor, teacher: torch.Tensor) -> float:
    """Eq. 12 literally: (1/N) Σ_i MSE(p_teach(x_i), p_stu(x_i)), MSE = mean over the L labels."""
    total = 0.0
    for lg, pt in zip(logits.tolist(), teacher.tolist(), strict=True):
        ps = _softmax(lg)
        total += sum((a - b) ** 2 for a, b in zip(pt, ps, strict=True)) / len(ps)
    return total / len(logits)


def _hard_by_hand(logits: torch.Tensor, hard: torch.Tensor) -> float:
    """Eq. 13 literally: (1/N) Σ_i I(x_i)·CE(ŷ_i, p_stu(x_i))."""
    total = 0.0
    for lg, y in zip(logits.tolist(), hard.tolist(), strict=True):
        if y != NO_HARD_LABEL:
            total += -math.log(_softmax(lg)[y])
    return total / len(logits)


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 9, generator=gen, dtype=torch.float64)
    teacher = torch.softmax(torch.randn(7, 9, generator=gen, dtype=torch.float64), dim=-1)
    hard = torch.tensor([3, NO_HARD_LABEL, 8, 0, NO_HARD_LABEL, 2, 2])
    return logits, hard, teacher


@pytest.mark.parametrize("name", ["mse (Eq. 12)", "kl"])
def test_soft_losses_match_their_transcriptions(kl_batch, name):
    loss, by_hand = (soft_loss, _soft_by_hand) if name.startswith("mse") else (soft_loss_kl, _kl_by_hand)
    logits, _, teacher = kl_batch
    assert loss(logits, teacher).item() == pytest.approx(by_hand(logits, teacher), rel=1e-9)


def test_soft_loss_matches_torch_mse_per_word(batch):
    logits, _, teacher = batch
    p = torch.softmax(logits, -1)
    per_word = [torch.nn.functional.mse_loss(p[i], teacher[i]) for i in range(len(p))]
    assert soft_loss(logits, teacher).item() == pytest.approx(torch.stack(per_word).mean().item())


def test_hard_loss_matches_eq13(batch):
    logits, hard, _ = batch
    assert hard_loss(logits, hard).item() == pytest.approx(_hard_by_hand(logits, hard), rel=1e-9)


def test_hard_loss_divides_by_all_words(batch):
    logits, hard, _ = batch
    ce = torch.nn.functional.cross_entropy(logits, hard, ignore_index=NO_HARD_LABEL, reduction="sum")
    assert hard_loss(logits, hard).item() == pytest.approx(ce.item() / 7)


def test_no_hard_label_in_batch_gives_finite_zero_and_gradients(batch):
    logits, _, teacher = batch
    logits = logits.clone().requires_grad_(True)
    none = torch.full((7,), NO_HARD_LABEL)
    h = hard_loss(logits, none)
    assert h.item() == 0.0
    loss = DistillLoss()(logits, none, teacher)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert loss.item() == pytest.approx(_soft_by_hand(logits.detach(), teacher))


def test_empty_batch_is_zero_not_nan():
    logits = torch.zeros(0, 9, requires_grad=True)
    loss = DistillLoss()(logits, torch.zeros(0, dtype=torch.long), torch.zeros(0, 9))
    assert loss.item() == 0.0


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0, 2.0])
def test_sentence_loss_matches_eq9_summand(batch, eta):
    logits, hard, teacher = batch
    want = eta * _hard_by_hand(logits, hard) + _soft_by_hand(logits, teacher)
    assert sentence_loss(logits, hard, teacher, eta=eta).item() == pytest.approx(want, rel=1e-9)
    assert DistillLoss(eta=eta)(logits, hard, teacher).item() == pytest.approx(want, rel=1e-9)


def test_no_soft_ablation_is_hard_loss_only(batch):
    logits, hard, _ = batch
    got = DistillLoss(soft_weight=0.0)(logits, hard, None)
    assert got.item() == pytest.approx(_hard_by_hand(logits, hard))


def test_corpus_loss_averages_sentences(batch):
    logits, hard, teacher = batch
    parts = [(logits[:3], hard[:3], teacher[:3]), (logits[3:], hard[3:], teacher[3:])]
    want = sum(_hard_by_hand(lg, hd) + _soft_by_hand(lg, tp) for lg, hd, tp in parts) / 2
    assert corpus_loss(parts).item() == pytest.approx(want, rel=1e-9)


def test_distill_loss_rejects_bad_weights():
    with pytest.raises(ValueError):
        DistillLoss(eta=-1)
    with pytest.raises(ValueError):
        DistillLoss(eta=0, soft_weight=0)


def _onehot(ids: list[int], n_labels: int = 3) -> np.ndarray:
    m = np.full((len(ids), n_labels), 0.1, dtype=np.float32)
    m[np.arange(len(ids)), ids] = 0.8
    return m


def test_voting_eqs_10_11():
    src = [_onehot([0, 1, 2, 2]), _onehot([1])]
    teach = [_onehot([0, 1, 1, 2]), _onehot([1])]
    trans = [_onehot([0, 2, 1, 2]), _onehot([0])]
    votes = vote_hard_labels(src, teach, trans)
    assert votes[0].tolist() == [0, NO_HARD_LABEL, NO_HARD_LABEL, 2]
    assert votes[1].tolist() == [NO_HARD_LABEL]
    assert voting_coverage(votes) == pytest.approx(2 / 5)
    assert voting_coverage([]) == 0.0


def test_voting_rejects_mismatched_inputs():
    with pytest.raises(ValueError):
        vote_hard_labels([_onehot([0])], [_onehot([0, 1])], [_onehot([0])])


def test_average_probs_eq14():
    a = [np.array([[0.2, 0.8]], dtype=np.float32), np.array([[1.0, 0.0], [0.5, 0.5]], dtype=np.float32)]
    b = [np.array([[0.6, 0.4]], dtype=np.float32), np.array([[0.0, 1.0], [0.5, 0.5]], dtype=np.float32)]
    avg = average_probs([a, b])
    np.testing.assert_allclose(avg[0], [[0.4, 0.6]])
    np.testing.assert_allclose(avg[1], [[0.5, 0.5], [0.5, 0.5]])
    assert average_probs([a])[1].tolist() == a[1].tolist()
    with pytest.raises(ValueError):
        average_probs([a, b[:1]])


# The KL soft loss (`soft_loss=kl`, beyond the paper)


def _kl_by_hand(logits: torch.Tensor, teacher: torch.Tensor) -> float:
    """(1/N) Σ_i Σ_c p_teach,c · log(p_teach,c / p_stu,c), a term with p_teach,c = 0 counting 0."""
    total = 0.0
    for lg, pt in zip(logits.tolist(), teacher.tolist(), strict=True):
        ps = _softmax(lg)
        total += sum(a * math.log(a / b) for a, b in zip(pt, ps, strict=True) if a > 0)
    return total / len(logits)


@pytest.fixture
def kl_batch(batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`batch` with one one-hot teacher row: zero teacher probabilities must not give NaN."""
    logits, hard, teacher = batch
    teacher = teacher.clone()
    teacher[2] = torch.nn.functional.one_hot(torch.tensor(4), 9).to(teacher.dtype)
    return logits, hard, teacher


def test_kl_gradient_is_student_minus_teacher_over_n(kl_batch):
    logits, _, teacher = kl_batch
    leaf = logits.clone().requires_grad_(True)
    soft_loss_kl(leaf, teacher).backward()
    expected = (torch.softmax(logits, -1) - teacher) / len(logits)
    torch.testing.assert_close(leaf.grad, expected, rtol=1e-9, atol=1e-12)
    # MSE's gradient is much weaker on the same batch: what the option is for
    mse_leaf = logits.clone().requires_grad_(True)
    soft_loss(mse_leaf, teacher).backward()
    assert mse_leaf.grad.abs().sum() < leaf.grad.abs().sum() / 5


def test_kl_is_zero_at_the_teacher_and_on_an_empty_batch():
    teacher = torch.softmax(torch.randn(4, 9, dtype=torch.float64), -1)
    assert soft_loss_kl(teacher.log(), teacher).item() == pytest.approx(0.0, abs=1e-12)
    empty = torch.zeros(0, 9, requires_grad=True)
    assert soft_loss_kl(empty, torch.zeros(0, 9)).item() == 0.0


def test_distill_loss_with_kl(kl_batch):
    logits, hard, teacher = kl_batch
    got = DistillLoss(eta=0.5, soft="kl")(logits, hard, teacher)
    expected = 0.5 * hard_loss(logits, hard) + soft_loss_kl(logits, teacher)
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)
    assert DistillLoss()(logits, hard, teacher).item() == pytest.approx(
        (hard_loss(logits, hard) + soft_loss(logits, teacher)).item(), rel=1e-12
    )  # the default is still the paper's MSE
    with pytest.raises(ValueError, match="soft loss must be one of"):
        DistillLoss(soft="l2")
