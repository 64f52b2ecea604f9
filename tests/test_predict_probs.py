"""Prediction: one probability row per word (long sentences, empty words), reloadable, HF-loadable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from unitrans.data import CONLL_LABELS, Sentence
from unitrans.errors import UnitransError
from unitrans.model.predict import load_probs, model_labels, predict_probs, save_probs
from unitrans.train.supervised import TrainConfig, train_tagger

TRAIN = [
    Sentence(("John", "Smith", "visited", "Madrid", "."), ("B-PER", "I-PER", "O", "B-LOC", "O")),
    Sentence(("Google", "said", "."), ("B-ORG", "O", "O")),
] * 8


@pytest.fixture(scope="module")
def checkpoint(tiny_encoder_dir, tmp_path_factory) -> Path:
    cfg = TrainConfig(
        encoder=str(tiny_encoder_dir), epochs=12, batch_size=4, freeze_layers=1, lr=5e-3, max_length=32
    )
    return train_tagger(TRAIN, tmp_path_factory.mktemp("ckpt") / "m", cfg, progress=False)


def test_probabilities_one_row_per_word(checkpoint):
    sentences = [
        Sentence(("John", "visited", "Madrid", ".")),
        Sentence(()),
        Sentence(("", "Google", "\u200b")),
    ]
    probs = predict_probs(checkpoint, sentences, progress=False)
    assert [p.shape for p in probs] == [(4, 9), (0, 9), (3, 9)]
    for p in probs:
        assert p.dtype == np.float32
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert model_labels(checkpoint) == list(CONLL_LABELS)


def test_model_learns_the_fixture(checkpoint):
    (probs,) = predict_probs(checkpoint, [TRAIN[0].unlabelled()], progress=False)
    labels = model_labels(checkpoint)
    assert [labels[i] for i in probs.argmax(1)] == list(TRAIN[0].tags)


def test_2000_word_sentence_gets_2000_predictions_matching_short_context(checkpoint):
    words = ("John", "Smith", "visited", "Madrid", ".") * 400
    (long,) = predict_probs(checkpoint, [Sentence(words)], progress=False)
    assert long.shape == (2000, 9)
    np.testing.assert_allclose(long.sum(axis=1), 1.0, rtol=1e-5)
    labels = model_labels(checkpoint)
    assert [labels[i] for i in long.argmax(1)[:5]] == list(TRAIN[0].tags)


def test_batching_does_not_change_results(checkpoint):
    sentences = [s.unlabelled() for s in TRAIN] + [Sentence(("Madrid",) * n) for n in range(1, 40, 3)]
    one = predict_probs(checkpoint, sentences, batch_size=1, progress=False, bf16=False)
    many = predict_probs(checkpoint, sentences, batch_size=64, progress=False, bf16=False)
    for a, b in zip(one, many, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_save_and_load_probs_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    probs = [rng.dirichlet(np.ones(9), size=n).astype(np.float32) for n in (3, 0, 7)]
    save_probs(tmp_path / "p.npz", probs, CONLL_LABELS)
    back, labels = load_probs(tmp_path / "p.npz")
    assert labels == list(CONLL_LABELS)
    assert [b.shape for b in back] == [(3, 9), (0, 9), (7, 9)]
    for a, b in zip(probs, back, strict=True):
        np.testing.assert_array_equal(a, b)
    save_probs(tmp_path / "h.npz", probs, CONLL_LABELS, dtype=np.float16)
    half, _ = load_probs(tmp_path / "h.npz")
    np.testing.assert_allclose(np.concatenate(half), np.concatenate(probs), atol=1e-3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.npz", "p.npz"]  # no temp files left


def test_load_probs_rejects_other_files(tmp_path):
    (tmp_path / "x.npz").write_text("not numpy")
    with pytest.raises(UnitransError, match=r"x\.npz"):
        load_probs(tmp_path / "x.npz")


def test_checkpoint_loads_in_a_transformers_pipeline(checkpoint):
    from transformers import pipeline

    tagger = pipeline("token-classification", model=str(checkpoint), device="cpu")
    entities = tagger("John Smith visited Madrid .")
    assert {e["entity"] for e in entities} <= set(CONLL_LABELS)
    assert any(e["word"] == "madrid" and e["entity"] == "B-LOC" for e in entities)
