"""WiSE-FT blending of a trained tagger with its init (`TrainConfig.merge_init`, the pipeline's
`student_merge`): the saved weights are the blend, frozen layers stay, resume is exact, keys change only
when it is set, and the model card says so."""

from __future__ import annotations

import json

import pytest
import torch

from test_student_init import _config, _record
from test_train_supervised import TRAIN, Interrupt, config, dying_loss, weights
from unitrans.errors import UnitransError
from unitrans.pipeline.config import make_config
from unitrans.pipeline.runner import run_pipeline
from unitrans.pipeline.settings import parse_settings
from unitrans.train import resume
from unitrans.train.averaging import blend_into, trainable_copy
from unitrans.train.supervised import TrainConfig, train_tagger


def test_blend_into_is_the_convex_combination_of_the_trainable_weights():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    model[0].requires_grad_(False)
    init = trainable_copy(model)
    assert set(init) == {"1.weight", "1.bias"}
    frozen = model[0].weight.detach().clone()
    with torch.no_grad():
        model[1].weight.fill_(3.0)
        model[1].bias.fill_(-1.0)
    blend_into(model, init, 0.25)
    assert torch.allclose(model[1].weight, 0.75 * 3.0 + 0.25 * init["1.weight"])
    assert torch.allclose(model[1].bias, 0.75 * -1.0 + 0.25 * init["1.bias"])
    assert torch.equal(model[0].weight, frozen)
    with pytest.raises(ValueError, match="share"):
        blend_into(model, init, 1.5)
    with pytest.raises(ValueError, match="lacks"):
        blend_into(model, {"2.weight": torch.zeros(1)}, 0.5)


@pytest.fixture(scope="module")
def init_model(tiny_encoder_dir, tmp_path_factory):
    return train_tagger(
        TRAIN, tmp_path_factory.mktemp("init") / "m", config(tiny_encoder_dir), progress=False
    )


def test_the_trainer_saves_the_blend_of_its_weights_and_the_init(tiny_encoder_dir, init_model, tmp_path):
    trained = weights(train_tagger(TRAIN, tmp_path / "a", config(tiny_encoder_dir), init=init_model,
                                   progress=False))  # fmt: skip
    merged = weights(train_tagger(TRAIN, tmp_path / "b", config(tiny_encoder_dir, merge_init=0.5),
                                  init=init_model, progress=False))  # fmt: skip
    start = weights(init_model)
    moved = [n for n in trained if not torch.equal(trained[n], start[n])]
    assert "classifier.weight" in moved and all(
        n.startswith(("bert.encoder.layer.1", "classifier")) for n in moved
    )
    for name in trained:  # frozen weights equal in all three, so the blend holds for every tensor
        torch.testing.assert_close(merged[name], 0.5 * trained[name] + 0.5 * start[name], rtol=0, atol=1e-6)
    assert not torch.allclose(merged["classifier.weight"], trained["classifier.weight"])


def test_an_interrupted_blending_run_resumes_to_the_same_weights(tiny_encoder_dir, init_model, tmp_path):
    cfg = config(tiny_encoder_dir, save_every=3, merge_init=0.5)
    full = weights(train_tagger(TRAIN, tmp_path / "full", cfg, init=init_model, progress=False))
    dying = dying_loss(8)
    with pytest.raises(Interrupt):
        train_tagger(TRAIN, tmp_path / "cut", cfg, init=init_model, loss_fn=dying, progress=False)
    assert (tmp_path / "cut" / resume.STATE_FILE).is_file()  # the resumed run's init snapshot is the init's
    resumed = weights(train_tagger(TRAIN, tmp_path / "cut", cfg, init=init_model, progress=False))
    assert all(torch.equal(full[n], resumed[n]) for n in full)


def test_merge_init_is_validated_and_keys_models_only_when_set(tiny_encoder_dir, tmp_path):
    assert "merge_init" not in TrainConfig().results_key()  # models from before it existed keep their keys
    assert TrainConfig(merge_init=0.5).results_key()["merge_init"] == 0.5
    for bad in (1.0, -0.1):
        with pytest.raises(UnitransError, match="merge_init must be in"):
            TrainConfig(merge_init=bad)
    with pytest.raises(UnitransError, match="give one"):
        train_tagger(TRAIN, tmp_path / "m", config(tiny_encoder_dir, merge_init=0.5), progress=False)


def test_student_merge_needs_a_teacher_init():
    config = make_config(
        "paper", targets=("es",), **parse_settings(["student_init=teach", "student_merge=0.5"])
    )
    assert config.student_merge == 0.5
    assert make_config("paper", targets=("es",)).student_merge == 0.0
    with pytest.raises(UnitransError, match="set student_init to src, trans or teach"):
        make_config("paper", targets=("es",), student_merge=0.5)
    with pytest.raises(UnitransError, match=r"student_merge in \[0, 1\)"):
        make_config("paper", targets=("es",), student_init="teach", student_merge=1.0)


def test_the_pipeline_student_is_keyed_by_the_blend_and_the_card_says_it(tiny_encoder_dir, tmp_path):
    cache = tmp_path / "cache"
    label = "es: student unitrans (seed 42)"
    plain = run_pipeline(
        _config(tiny_encoder_dir, tmp_path / "a", cache, student_init="teach"), progress=False
    )
    merged = run_pipeline(
        _config(tiny_encoder_dir, tmp_path / "b", cache, student_init="teach", student_merge=0.5),
        progress=False,
    )
    assert _record(merged, "es: train teach (seed 42)").cached and not _record(merged, label).cached
    plain_settings = json.loads((_record(plain, label).folder / "manifest.json").read_text())["settings"]
    settings = json.loads((_record(merged, label).folder / "manifest.json").read_text())["settings"]
    assert "merge_init" not in plain_settings["train"] and settings["train"]["merge_init"] == 0.5
    card = (merged.exports["es"]["unitrans"] / "README.md").read_text()
    assert "(1 − 0.5)·student + 0.5·teacher" in card
    assert "WiSE-FT" not in (plain.exports["es"]["unitrans"] / "README.md").read_text()


def test_the_student_batch_size_keys_the_student_alone_and_the_card_says_it(tiny_encoder_dir, tmp_path):
    cache = tmp_path / "cache"
    label = "es: student unitrans (seed 42)"
    base = {"student_init": "teach"}
    plain = run_pipeline(_config(tiny_encoder_dir, tmp_path / "a", cache, **base), progress=False)
    same = run_pipeline(  # equal to batch_size: the same student, from the cache
        _config(tiny_encoder_dir, tmp_path / "s", cache, **base, student_batch_size=2),
        progress=False,
    )
    assert _record(same, label).cached
    other = run_pipeline(
        _config(tiny_encoder_dir, tmp_path / "b", cache, **base, student_batch_size=3), progress=False
    )
    assert _record(other, "es: train teach (seed 42)").cached and not _record(other, label).cached
    settings = json.loads((_record(other, label).folder / "manifest.json").read_text())["settings"]
    assert settings["train"]["batch_size"] == 3
    card = (other.exports["es"]["unitrans"] / "README.md").read_text()
    assert "batches of 3 sentences, the teachers in batches of 2" in card
    assert "batches of" not in (plain.exports["es"]["unitrans"] / "README.md").read_text()
    with pytest.raises(UnitransError, match="student_batch_size ≥ 0"):
        make_config("paper", targets=("es",), student_batch_size=-1)
