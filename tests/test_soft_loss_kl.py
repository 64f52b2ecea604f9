"""`soft_loss=kl`: the KL distillation loss beside the paper's MSE (Eq. 12), and where it enters the keys."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import tiny_train_sentences
from unitrans.errors import UnitransError
from unitrans.pipeline import distillation
from unitrans.pipeline.cache import StageRecord
from unitrans.pipeline.config import SOFT_LOSSES, make_config, parse_settings
from unitrans.pipeline.stages import Corpus
from unitrans.train.distill import NO_HARD_LABEL, DistillLoss, hard_loss, soft_loss, soft_loss_kl
from unitrans.train.distill import SOFT_LOSSES as LOSS_FUNCTIONS


def _softmax(row: list[float]) -> list[float]:
    m = max(row)
    e = [math.exp(v - m) for v in row]
    return [v / sum(e) for v in e]


def _kl_by_hand(logits: torch.Tensor, teacher: torch.Tensor) -> float:
    """(1/N) Σ_i Σ_c p_teach,c · log(p_teach,c / p_stu,c), a term with p_teach,c = 0 counting 0."""
    total = 0.0
    for lg, pt in zip(logits.tolist(), teacher.tolist(), strict=True):
        ps = _softmax(lg)
        total += sum(a * math.log(a / b) for a, b in zip(pt, ps, strict=True) if a > 0)
    return total / len(logits)


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 9, generator=gen, dtype=torch.float64)
    teacher = torch.softmax(3 * torch.randn(6, 9, generator=gen, dtype=torch.float64), dim=-1)
    teacher[2] = torch.zeros(9, dtype=torch.float64)
    teacher[2, 4] = 1.0  # a one-hot teacher: zero probabilities must not give NaN
    hard = torch.tensor([1, NO_HARD_LABEL, 4, 0, NO_HARD_LABEL, 8])
    return logits, hard, teacher


def test_kl_matches_its_definition(batch):
    logits, _, teacher = batch
    assert soft_loss_kl(logits, teacher).item() == pytest.approx(_kl_by_hand(logits, teacher), rel=1e-9)


def test_kl_gradient_is_student_minus_teacher_over_n(batch):
    logits, _, teacher = batch
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


def test_distill_loss_with_kl(batch):
    logits, hard, teacher = batch
    got = DistillLoss(eta=0.5, soft="kl")(logits, hard, teacher)
    expected = 0.5 * hard_loss(logits, hard) + soft_loss_kl(logits, teacher)
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)
    assert DistillLoss()(logits, hard, teacher).item() == pytest.approx(
        (hard_loss(logits, hard) + soft_loss(logits, teacher)).item(), rel=1e-12
    )  # the default is still the paper's MSE
    with pytest.raises(ValueError, match="soft loss must be one of"):
        DistillLoss(soft="l2")


def test_the_config_knows_every_soft_loss():
    assert tuple(LOSS_FUNCTIONS) == SOFT_LOSSES
    assert make_config("paper", targets=("es",)).soft_loss == "mse"
    assert make_config("paper", targets=("es",), **parse_settings(["soft_loss=kl"])).soft_loss == "kl"
    with pytest.raises(UnitransError, match="expected soft_loss among mse, kl"):
        make_config("paper", targets=("es",), soft_loss="l2")


class _Recorder:
    """A stand-in StageContext that records what a stage would be keyed by."""

    def __init__(self, config):
        self.config, self.calls = config, []

    def run(self, stage, settings, inputs, build, **kw):
        self.calls.append(settings)


@pytest.mark.parametrize(
    ("name", "with_soft", "keyed"), [("mse", True, False), ("kl", True, True), ("kl", False, False)]
)
def test_the_student_key_names_kl_only_when_it_is_used(name, with_soft, keyed, tmp_path):
    config = make_config("paper", targets=("es",), soft_loss=name)
    ctx = _Recorder(config)
    data = Corpus("d", tiny_train_sentences(), "k-data")
    soft = StageRecord("probs", "p", "k-soft", tmp_path, True, 0.0) if with_soft else None
    hard = StageRecord("votes", "v", "k-hard", tmp_path, True, 0.0)
    distillation.student(ctx, data, soft=soft, hard=hard, seed=1, label="s")
    (settings,) = ctx.calls
    assert ("soft_loss" in settings) is keyed
    if keyed:
        assert settings["soft_loss"] == "kl"
    assert set(settings) - {"soft_loss"} == {"eta", "soft_weight", "train"}
