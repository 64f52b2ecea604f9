"""Training: frozen layers stay put, a seed fixes the result, an interrupted run resumes exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_train_sentences
from unitrans.data import CONLL_LABELS, Sentence
from unitrans.errors import UnitransError
from unitrans.train import resume
from unitrans.train.supervised import TrainConfig, cross_entropy_loss, train_tagger

TRAIN = tiny_train_sentences() * 6


def config(encoder: Path, **kw) -> TrainConfig:
    base = dict(encoder=str(encoder), epochs=2, batch_size=4, freeze_layers=1, max_length=16, lr=1e-3)
    return TrainConfig(**{**base, **kw})


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_frozen_parameters_unchanged_trainable_ones_move(tiny_encoder_dir, tmp_path):
    out = train_tagger(TRAIN, tmp_path / "m", config(tiny_encoder_dir), progress=False)
    after = weights(out)
    before = load_file(str(tiny_encoder_dir / "model.safetensors"))
    frozen = [n for n in before if n.startswith(("embeddings.", "encoder.layer.0."))]
    top = [n for n in before if n.startswith("encoder.layer.1.")]
    assert frozen and top
    for name in frozen:
        assert torch.equal(after[f"bert.{name}"], before[name]), name
    assert all(not torch.equal(after[f"bert.{n}"], before[n]) for n in top)


def test_frozen_dropout_trains_without_the_cache_and_keeps_layers_frozen(tiny_encoder_dir, tmp_path):
    cfg = config(tiny_encoder_dir, epochs=1, frozen_dropout=True)
    out = weights(train_tagger(TRAIN, tmp_path / "d", cfg, progress=False))
    plain = weights(train_tagger(TRAIN, tmp_path / "p", config(tiny_encoder_dir, epochs=1), progress=False))
    before = load_file(str(tiny_encoder_dir / "model.safetensors"))
    name = "encoder.layer.0.output.dense.weight"
    assert torch.equal(out[f"bert.{name}"], before[name])
    assert not torch.equal(out["classifier.weight"], plain["classifier.weight"])


def test_same_seed_same_weights_other_seed_differs(tiny_encoder_dir, tmp_path):
    a = weights(train_tagger(TRAIN, tmp_path / "a", config(tiny_encoder_dir, seed=3), progress=False))
    b = weights(train_tagger(TRAIN, tmp_path / "b", config(tiny_encoder_dir, seed=3), progress=False))
    c = weights(train_tagger(TRAIN, tmp_path / "c", config(tiny_encoder_dir, seed=4), progress=False))
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.equal(a["classifier.weight"], c["classifier.weight"])


class Interrupt(Exception):
    pass


def dying_loss(at_call: int):
    """The default loss, raising `Interrupt` at its `at_call`-th call (in this process): an interrupted run
    that a resume must finish to the same weights."""
    calls = 0

    def loss(logits, hard, soft):
        nonlocal calls
        calls += 1
        if calls == at_call:
            raise Interrupt
        return cross_entropy_loss(logits, hard, soft)

    loss.__qualname__ = cross_entropy_loss.__qualname__  # same run as far as resume is concerned
    loss.divides_by = cross_entropy_loss.divides_by
    return loss


@pytest.mark.parametrize("batch_by", ["sentences", "words"])
def test_interrupted_run_resumes_to_the_same_weights(tiny_encoder_dir, tmp_path, batch_by):
    cfg = config(tiny_encoder_dir, save_every=3, epochs=3, batch_by=batch_by)
    full = weights(train_tagger(TRAIN, tmp_path / "full", cfg, progress=False))

    dying = dying_loss(8)  # dies during step 8: the last state is from step 6
    with pytest.raises(Interrupt):
        train_tagger(TRAIN, tmp_path / "cut", cfg, loss_fn=dying, progress=False)
    assert (tmp_path / "cut" / resume.STATE_FILE).is_file()
    assert torch.load(tmp_path / "cut" / resume.STATE_FILE, weights_only=False)["step"] == 6
    out = train_tagger(TRAIN, tmp_path / "cut", cfg, progress=False)
    resumed = weights(out)
    assert all(torch.equal(full[n], resumed[n]) for n in full)
    assert not (out / resume.STATE_FILE).exists()
    import json

    assert json.loads((out / "unitrans.json").read_text())["train"]["resumed_from_step"] == 6


def test_soft_targets_and_custom_loss_reach_the_loss(tiny_encoder_dir, tmp_path):
    unlabelled = [s.unlabelled() for s in TRAIN]
    rng = np.random.default_rng(0)
    soft = [rng.dirichlet(np.ones(len(CONLL_LABELS)), size=len(s)).astype(np.float32) for s in TRAIN]
    hard = [np.where(rng.random(len(s)) < 0.5, -100, 8) for s in TRAIN]
    seen = {"words": 0, "hard": 0}

    def mse_plus_ce(logits, hard_t, soft_t):
        assert soft_t is not None and soft_t.shape == logits.shape and logits.dtype == torch.float32
        seen["words"] += len(hard_t)
        seen["hard"] += int((hard_t != -100).sum())
        probs = logits.softmax(-1)
        return ((probs - soft_t) ** 2).sum(-1).mean() + cross_entropy_loss(logits, hard_t, soft_t)

    cfg = config(tiny_encoder_dir, epochs=1)
    out = tmp_path / "s"
    train_tagger(
        unlabelled, out, cfg, hard_labels=hard, soft_targets=soft, loss_fn=mse_plus_ce, progress=False
    )
    assert seen["words"] == sum(len(s) for s in TRAIN)
    assert seen["hard"] == sum(int((h != -100).sum()) for h in hard)


def test_init_continues_from_a_checkpoint(tiny_encoder_dir, tmp_path):
    src = train_tagger(TRAIN, tmp_path / "src", config(tiny_encoder_dir, epochs=1), progress=False)
    teach = train_tagger(
        TRAIN[:8], tmp_path / "teach", config(tiny_encoder_dir, epochs=1), init=src, progress=False
    )
    a, b = weights(src), weights(teach)
    assert torch.equal(
        a["bert.embeddings.word_embeddings.weight"], b["bert.embeddings.word_embeddings.weight"]
    )
    assert not torch.equal(a["classifier.weight"], b["classifier.weight"])


def test_bad_targets_are_user_errors(tiny_encoder_dir, tmp_path):
    cfg = config(tiny_encoder_dir, epochs=1)
    with pytest.raises(UnitransError, match="no tags"):
        train_tagger([s.unlabelled() for s in TRAIN], tmp_path / "x", cfg, progress=False)
    with pytest.raises(UnitransError, match="not one of"):
        train_tagger([Sentence(("a",), ("B-FOO",))], tmp_path / "x", cfg, progress=False)
    with pytest.raises(UnitransError, match="invalid training config"):
        TrainConfig(epochs=0)


def test_word_loss_weighting_rescales_batches_by_their_word_count(tiny_encoder_dir, tmp_path):
    def train(sentences, name, weighting):
        cfg = config(tiny_encoder_dir, epochs=1, loss_weighting=weighting, batch_by="sentences")
        return weights(train_tagger(sentences, tmp_path / name, cfg, progress=False))

    # Every batch holds the same number of words: the scale is exactly 1, so nothing changes.
    even = [TRAIN[0], TRAIN[2]] * 8
    a, b = train(even, "even-batch", "batch"), train(even, "even-word", "word")
    assert all(torch.equal(a[n], b[n]) for n in a)
    # Batches of 3-word and 7-word sentences: a per-batch mean weighs their words differently.
    c, d = train(TRAIN, "mixed-batch", "batch"), train(TRAIN, "mixed-word", "word")
    assert not torch.equal(c["classifier.weight"], d["classifier.weight"])


def test_loss_weighting_enters_the_key_unless_it_has_its_value_from_before_it_existed():
    assert TrainConfig().results_key()["loss_weighting"] == "word"  # the default since it was measured
    assert "loss_weighting" not in TrainConfig(loss_weighting="batch").results_key()
    with pytest.raises(UnitransError, match="loss_weighting must be one of"):
        TrainConfig(loss_weighting="sentence")


def test_batch_by_words_trains_other_weights_and_enters_the_key(tiny_encoder_dir, tmp_path):
    assert "batch_by" not in TrainConfig(batch_by="sentences").results_key()
    assert TrainConfig().results_key()["batch_by"] == "words"
    with pytest.raises(UnitransError, match="batch_by must be one of"):
        TrainConfig(batch_by="tokens")
    cfg = config(tiny_encoder_dir, epochs=1, batch_by="sentences")
    a = weights(train_tagger(TRAIN, tmp_path / "s", cfg, progress=False))
    b = weights(train_tagger(TRAIN, tmp_path / "w", config(tiny_encoder_dir, epochs=1), progress=False))
    assert not torch.equal(a["classifier.weight"], b["classifier.weight"])
