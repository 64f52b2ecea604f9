"""Tail averaging: the saved weights are the mean of the last steps; frozen layers stay; resume is exact."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from test_train_supervised import TRAIN, Interrupt, config, dying_loss, weights
from unitrans.errors import UnitransError
from unitrans.train import resume
from unitrans.train.averaging import TailAverage
from unitrans.train.supervised import TrainConfig, train_tagger


def test_the_average_takes_the_last_share_of_steps_and_only_trainable_weights():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    model[0].requires_grad_(False)
    average = TailAverage(model, total=6, share=0.5)
    assert set(average.params) == {"1.weight", "1.bias"}
    for done in range(1, 7):
        with torch.no_grad():
            model[1].weight.fill_(float(done))
        average.update(done)
    assert average.count == 3
    assert torch.equal(average.averaged()["1.weight"], torch.full((1, 2), 5.0))  # mean of steps 4, 5, 6

    other = TailAverage(model, total=6, share=0.5)
    other.load_state_dict(average.state_dict())
    assert torch.equal(other.averaged()["1.bias"], average.averaged()["1.bias"])
    with pytest.raises(ValueError, match="another schedule"):
        TailAverage(model, total=8, share=0.5).load_state_dict(average.state_dict())
    with pytest.raises(ValueError, match="share"):
        TailAverage(model, total=6, share=0.0)


def test_the_trainer_saves_the_mean_of_its_last_steps(tiny_encoder_dir, tmp_path):
    seen: list[dict[str, torch.Tensor]] = []

    def record(done: int, total: int, model: torch.nn.Module) -> None:
        seen.append({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})

    last = weights(train_tagger(TRAIN, tmp_path / "last", config(tiny_encoder_dir), progress=False,
                                on_step=record))  # fmt: skip
    averaged = weights(train_tagger(TRAIN, tmp_path / "avg", config(tiny_encoder_dir, average_last=0.5),
                                    progress=False))  # fmt: skip
    tail = seen[-math.ceil(0.5 * len(seen)) :]
    assert len(seen) > 2 and len(tail) < len(seen)
    for name in seen[0]:
        expected = torch.stack([s[name] for s in tail]).mean(0)
        assert torch.allclose(averaged[name], expected, atol=1e-6), name
        assert torch.equal(last[name], seen[-1][name]), name  # the hook saw the same run's weights
    assert not torch.allclose(averaged["classifier.weight"], last["classifier.weight"])
    before = load_file(str(tiny_encoder_dir / "model.safetensors"))
    frozen = "encoder.layer.0.output.dense.weight"
    assert torch.equal(averaged[f"bert.{frozen}"], before[frozen])


def test_an_interrupted_averaging_run_resumes_to_the_same_weights(tiny_encoder_dir, tmp_path):
    cfg = config(tiny_encoder_dir, save_every=3, epochs=3, average_last=0.5)
    full = weights(train_tagger(TRAIN, tmp_path / "full", cfg, progress=False))
    dying = dying_loss(14)  # 18 steps, tail from step 10: the last state (step 12) holds a partial average
    with pytest.raises(Interrupt):
        train_tagger(TRAIN, tmp_path / "cut", cfg, loss_fn=dying, progress=False)
    state = torch.load(tmp_path / "cut" / resume.STATE_FILE, weights_only=False)
    assert state["step"] == 12 and state["average"]["count"] == 3
    resumed = weights(train_tagger(TRAIN, tmp_path / "cut", cfg, progress=False))
    assert all(torch.equal(full[n], resumed[n]) for n in full)


def test_average_last_is_validated_and_keys_models_only_when_set():
    assert "average_last" not in TrainConfig(average_last=0.0).results_key()  # models from before it existed
    assert TrainConfig(average_last=0.25).results_key()["average_last"] == 0.25
    with pytest.raises(UnitransError, match="average_last must be in"):
        TrainConfig(average_last=1.5)
