"""`--set denoise=neighbours` in training and in the pipeline: per-word weights, word states, cache keys
(the default leaves every key as it was), and the label-free agreement in the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_train_sentences
from unitrans.data import CONLL_LABELS
from unitrans.errors import UnitransError
from unitrans.model.tagger import load_tagger
from unitrans.model.windows import make_windows
from unitrans.model.word_states import word_states
from unitrans.pipeline import distillation, stages
from unitrans.pipeline.cache import StageRecord
from unitrans.pipeline.config import make_config
from unitrans.pipeline.runner import run_pipeline
from unitrans.pipeline.stages import Corpus
from unitrans.train import denoise
from unitrans.train.supervised import TrainConfig, train_tagger

TRAIN = tiny_train_sentences() * 4
FIXTURES = Path(__file__).parent / "fixtures" / "pipeline"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cfg(encoder: Path) -> TrainConfig:
    return TrainConfig(encoder=str(encoder), epochs=1, batch_size=4, freeze_layers=1, max_length=16, lr=1e-3)


@pytest.fixture(scope="module")
def tagger(tiny_encoder_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tagger") / "m"
    return train_tagger(TRAIN, out, _cfg(tiny_encoder_dir), progress=False)


def test_word_weights_change_training_and_are_checked(tiny_encoder_dir, tagger, tmp_path):
    half = [np.full(len(s), 0.5, np.float32) for s in TRAIN]
    out = train_tagger(TRAIN, tmp_path / "w", _cfg(tiny_encoder_dir), word_weights=half, progress=False)
    a, b = load_file(str(out / "model.safetensors")), load_file(str(tagger / "model.safetensors"))
    assert not torch.equal(a["classifier.weight"], b["classifier.weight"])
    with pytest.raises(UnitransError, match="word_weights for sentence 1"):
        bad = [np.full(len(s) + 1, 1.0, np.float32) for s in TRAIN]
        train_tagger(TRAIN, tmp_path / "x", _cfg(tiny_encoder_dir), word_weights=bad, progress=False)
    with pytest.raises(UnitransError, match="finite weights"):
        bad = [np.full(len(s), -1.0, np.float32) for s in TRAIN]
        train_tagger(TRAIN, tmp_path / "y", _cfg(tiny_encoder_dir), word_weights=bad, progress=False)


def test_word_states_are_the_mean_of_the_last_three_layers_at_first_subwords(tagger):
    sents = TRAIN[:3]
    got = word_states(tagger, sents, progress=False)
    model, tokenizer = load_tagger(tagger)
    model.eval()
    expected = []
    for w in make_windows(tokenizer, sents, 16):  # the tiny sentences fit one window each
        ids = torch.as_tensor(w.input_ids)[None]
        with torch.no_grad():
            hs = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
        layers = torch.stack(hs.hidden_states[1:][-3:]).mean(0)[0]  # layer outputs, not the embeddings
        expected.append(layers[torch.as_tensor(w.positions)].numpy())
    assert got.shape == (sum(len(s) for s in sents), 32)
    np.testing.assert_allclose(got, np.concatenate(expected), atol=1e-5)


class _Recorder:
    """A stand-in StageContext that records what a stage would be keyed by."""

    def __init__(self, config):
        self.config, self.calls = config, []

    def run(self, stage, settings, inputs, build, **kw):
        self.calls.append((stage, settings, dict(inputs)))


def test_default_leaves_model_and_student_keys_as_they_were(tiny_encoder_dir, tmp_path):
    config = make_config("paper", targets=("es",), data_dir=FIXTURES, encoder=str(tiny_encoder_dir))
    assert config.denoise == "none"
    ctx = _Recorder(config)
    data = Corpus("d", TRAIN, "k-data")
    stages.train_model(ctx, "trans", data, seed=1, lr=1e-3, epochs=1)
    soft = StageRecord("probs", "p", "k-soft", tmp_path, True, 0.0)
    hard = StageRecord("votes", "v", "k-hard", tmp_path, True, 0.0)
    distillation.student(ctx, data, soft=soft, hard=hard, seed=1, label="s")
    (_, settings, inputs), (_, s_settings, s_inputs) = ctx.calls
    # exactly the inputs and settings these stages had before denoising existed
    assert inputs == {"data": "k-data"}
    assert set(settings) == {"kind", "train"}
    assert s_inputs == {"data": "k-data", "soft": "k-soft", "hard": "k-hard"} and set(s_settings) == {
        "eta",
        "soft_weight",
        "train",
    }
    assert not any("denoise" in json.dumps(s) for _, s, _ in ctx.calls)


def test_config_defaults_are_colada_s():
    config = make_config("paper", targets=("es",))
    assert config.denoise_k == denoise.DEFAULT_K == 500
    assert config.denoise_beta == denoise.DEFAULT_BETA
    with pytest.raises(UnitransError, match="denoise among"):
        make_config("paper", targets=("es",), denoise="knn")
    with pytest.raises(UnitransError, match="denoise_beta"):
        make_config("paper", targets=("es",), denoise_beta=1.5)


TINY = {"epochs": 3, "teach_epochs": 2, "student_epochs": 3, "batch_size": 2, "max_length": 32,
        "freeze_layers": 1, "teacher_lr": 2e-2, "student_lr": 2e-2, "workers": 1}  # fmt: skip


def test_denoised_run_shares_what_it_can_and_reports_agreement(tiny_encoder_dir, tmp_path):
    base = {"targets": ("es",), "data_dir": FIXTURES, "encoder": str(tiny_encoder_dir), **TINY}
    base["variants"] = ("src", "trans", "unitrans")
    cache = tmp_path / "cache"
    plain = run_pipeline(
        make_config("paper", **base, out_dir=tmp_path / "a", cache_dir=cache), progress=False
    )
    dn_config = make_config(
        "paper", **base, out_dir=tmp_path / "b", cache_dir=cache, denoise="neighbours", denoise_k=3
    )
    dn = run_pipeline(dn_config, progress=False)
    keys = {r.label: (r.stage, r.key, r.cached) for r in dn.records}
    before = {r.label: r.key for r in plain.records}
    stage_of = {label: stage for label, (stage, _, _) in keys.items()}
    # unchanged: translation and Θsrc (cached); changed: Θtrans, Θteach, everything downstream
    for label, (stage, key, cached) in keys.items():
        if stage in ("translate",) or label.startswith("train src"):
            assert cached and before[label] == key, label
        if ("train trans" in label or "train teach" in label) or stage == "student":
            assert before[label] != key and not cached, label
    assert "denoise" in stage_of.values() and "trans-weights" in stage_of.values()
    assert "denoise" not in {r.stage for r in plain.records}
    runs = json.loads((tmp_path / "b" / "runs.json").read_text())
    diag = runs["es"]["unitrans"][0]["denoise"]
    assert set(diag) == {"dt_agreement", "dt_coverage_kept", "dtrans_agreement", "dtrans_mean_weight"}
    assert all(0.0 <= v <= 1.0 for v in diag.values())
    assert "denoise" not in runs["es"]["src"][0]
    assert "denoise" not in json.loads((tmp_path / "a" / "runs.json").read_text())["es"]["unitrans"][0]
    assert "Neighbour agreement" in (tmp_path / "b" / "results.md").read_text()
    assert "Neighbour agreement" not in (tmp_path / "a" / "results.md").read_text()
    # the student's denoised targets: probabilities still sum to 1, votes only where the teachers voted
    rec = next(r for r in dn.records if r.stage == "denoise")
    soft = np.concatenate(stages.read_probs(rec))
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-5)
    votes = np.concatenate(distillation.read_votes(rec))
    raw = np.concatenate(distillation.read_votes(next(r for r in dn.records if r.stage == "votes")))
    kept = votes != -100
    assert np.array_equal(votes[kept], raw[kept]) and kept.sum() <= (raw != -100).sum()
    assert len(CONLL_LABELS) == soft.shape[1]
