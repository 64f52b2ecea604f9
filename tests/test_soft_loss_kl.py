"""`soft_loss=kl` in the pipeline: the setting and where it enters the student's key (the loss itself is
tested in test_distill_losses.py)."""

from __future__ import annotations

import pytest

from conftest import tiny_train_sentences
from unitrans.errors import UnitransError
from unitrans.pipeline import distillation
from unitrans.pipeline.cache import StageRecord
from unitrans.pipeline.config import SOFT_LOSSES, make_config
from unitrans.pipeline.export import model_card
from unitrans.pipeline.settings import parse_settings
from unitrans.pipeline.stages import Corpus
from unitrans.train.distill import SOFT_LOSSES as LOSS_FUNCTIONS


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


@pytest.mark.parametrize(("variant", "said"), [("unitrans", True), ("no-soft", False), ("src", False)])
def test_the_model_card_names_the_kl_loss(variant, said, tmp_path):
    scores = {name: 0.5 for name in ("f1", "precision", "recall")}
    summary = {**scores, "f1_std": None, "per_seed": [{"seed": 42, "f1": 0.5}]}

    def card(preset):
        config = make_config(preset, targets=("es",), out_dir=tmp_path)
        labels = ["O", "B-PER", "I-PER"]
        return model_card(
            config, "es", variant, 42, labels, {variant: summary}, folder=tmp_path, pipeline_ready=False
        )

    assert ("soft loss was KL" in card("quick")) is said
    assert "soft loss was KL" not in card("paper")
