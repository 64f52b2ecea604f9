"""Compact checkpoints (issue 17 item 2): the cache keeps only what training changed, against a verified
base encoder; loads are bit-identical to full checkpoints, exports are complete."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import TINY_FAMILIES, tiny_train_sentences
from unitrans.data import CONLL_LABELS, Sentence
from unitrans.errors import UnitransError
from unitrans.model.compact import DELTA_FILE, weights_hash
from unitrans.model.predict import model_labels, predict_probs
from unitrans.model.tagger import load_tagger, read_metadata, save_tagger
from unitrans.pipeline.config import make_config
from unitrans.pipeline.export import export_model
from unitrans.pipeline.runner import run_pipeline
from unitrans.train.supervised import TrainConfig, train_tagger

FIXTURES = Path(__file__).parent / "fixtures" / "pipeline"
FAMILIES = TINY_FAMILIES
TRAIN = tiny_train_sentences() * 4
TEXT = [
    Sentence(("John", "visited", "Madrid", ".")),
    Sentence(("Juan", "vive", "en", "München", ",", "x" * 30)),
    Sentence(tuple("Mary met John Smith in the city of London and visited Paris".split() * 3)),
]


def config(encoder: Path, **kw) -> TrainConfig:
    base = dict(encoder=str(encoder), epochs=2, batch_size=4, freeze_layers=1, max_length=16, lr=1e-2)
    return TrainConfig(**{**base, **kw})


@pytest.fixture
def base_copy(tiny_encoder_dir, tmp_path) -> Path:
    """A private copy of the tiny encoder, free to be changed or moved by the test."""
    return Path(shutil.copytree(tiny_encoder_dir, tmp_path / "encoder"))


def _state(folder: Path) -> dict[str, torch.Tensor]:
    return load_tagger(folder)[0].state_dict()


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


def _same_probs(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(x.tobytes() == y.tobytes() for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_compact_round_trip_is_bit_identical(family, request, tmp_path):
    encoder = request.getfixturevalue(FAMILIES[family])
    full = train_tagger(TRAIN, tmp_path / "full", config(encoder), progress=False)
    small = train_tagger(TRAIN, tmp_path / "small", config(encoder), progress=False, compact=True)
    names = {p.name for p in small.iterdir()}
    assert DELTA_FILE in names and "model.safetensors" not in names and "tokenizer.json" not in names
    info = read_metadata(small)["compact"]
    assert info["base_sha256"] == weights_hash(encoder) and info["frozen"]
    assert not set(info["frozen"]) & set(load_file(str(small / DELTA_FILE)))
    assert _same_state(_state(full), _state(small))
    assert _same_probs(predict_probs(full, TEXT, progress=False), predict_probs(small, TEXT, progress=False))
    assert model_labels(small) == list(CONLL_LABELS)


def test_the_delta_holds_trainable_weights_and_only_them(tiny_encoder_dir, tmp_path):
    small = train_tagger(TRAIN, tmp_path / "m", config(tiny_encoder_dir), progress=False, compact=True)
    delta = load_file(str(small / DELTA_FILE))
    assert "classifier.weight" in delta and "bert.encoder.layer.1.output.dense.weight" in delta
    assert not [n for n in delta if "embeddings" in n or ".layer.0." in n]  # frozen: from the base
    full_size = sum(t.numel() for t in _state(small).values())
    assert sum(t.numel() for t in delta.values()) < full_size


def test_a_changed_base_encoder_is_one_line_naming_both(base_copy, tmp_path):
    small = train_tagger(TRAIN, tmp_path / "m", config(base_copy), progress=False, compact=True)
    want = weights_hash(base_copy)
    weights = load_file(str(base_copy / "model.safetensors"))
    name = next(n for n in weights if "word_embeddings" in n)
    weights[name] = weights[name] + 1.0
    save_file(weights, str(base_copy / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(UnitransError) as err:
        load_tagger(small)
    text = str(err.value)
    assert "\n" not in text and want[:12] in text and weights_hash(base_copy)[:12] in text
    assert str(base_copy.resolve()) in text
    shutil.rmtree(base_copy)
    with pytest.raises(UnitransError, match="missing") as err:
        predict_probs(small, TEXT, progress=False)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("damage", ["flip", "truncate", "drop"])
def test_a_damaged_delta_is_one_line(damage, tiny_encoder_dir, tmp_path):
    small = train_tagger(TRAIN, tmp_path / "m", config(tiny_encoder_dir), progress=False, compact=True)
    path = small / DELTA_FILE
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[10] ^= 0xFF  # inside the JSON header
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:  # a valid file that lacks a trained tensor
        delta = load_file(str(path))
        delta.pop("classifier.bias")
        save_file(delta, str(path), metadata={"base_sha256": weights_hash(tiny_encoder_dir)})
    with pytest.raises(UnitransError) as err:
        load_tagger(small)
    assert "\n" not in str(err.value) and str(small) in str(err.value)


def test_export_of_a_compact_model_is_complete_and_loads_without_the_base(base_copy, tmp_path):
    small = train_tagger(TRAIN, tmp_path / "m", config(base_copy), progress=False, compact=True)
    expected = predict_probs(small, TEXT, progress=False)
    out = export_model(small, tmp_path / "models" / "es", "# card\n", list(CONLL_LABELS), "k1")
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "unitrans.json", "README.md"} <= names
    assert DELTA_FILE not in names and "compact" not in read_metadata(out)
    record = json.loads((out / "export.json").read_text())
    assert "model.safetensors" in record["files"]
    before = (out / "model.safetensors").stat().st_mtime_ns
    assert export_model(small, out, "# card\n", list(CONLL_LABELS), "k1") == out  # unchanged: not redone
    assert (out / "model.safetensors").stat().st_mtime_ns == before
    shutil.rmtree(base_copy)  # the export must not need it
    assert _same_probs(predict_probs(out, TEXT, progress=False), expected)
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(out, trust_remote_code=False)
    assert model.config.id2label[1] == CONLL_LABELS[1]


def test_teach_from_a_compact_src_equals_teach_from_a_full_src(tiny_encoder_dir, tmp_path):
    src_full = train_tagger(TRAIN, tmp_path / "sf", config(tiny_encoder_dir), progress=False)
    src_small = train_tagger(TRAIN, tmp_path / "ss", config(tiny_encoder_dir), progress=False, compact=True)
    cfg = config(tiny_encoder_dir, epochs=1, seed=5)
    teach_full = train_tagger(TRAIN[:6], tmp_path / "tf", cfg, init=src_full, progress=False)
    teach_small = train_tagger(TRAIN[:6], tmp_path / "ts", cfg, init=src_small, progress=False, compact=True)
    assert read_metadata(teach_small)["compact"]["base_folder"] == str(tiny_encoder_dir.resolve())
    assert _same_state(_state(teach_full), _state(teach_small))


def test_a_saved_compact_copy_of_a_full_checkpoint_predicts_the_same(tiny_encoder_dir, tmp_path):
    full = train_tagger(TRAIN, tmp_path / "full", config(tiny_encoder_dir), progress=False)
    model, tokenizer = load_tagger(full)
    small = save_tagger(model, tokenizer, tmp_path / "c", read_metadata(full), base=tiny_encoder_dir)
    assert not (small / "model.safetensors").exists()
    # nothing is frozen in a reloaded model: every weight counts as trained, none as missing
    assert _same_probs(predict_probs(full, TEXT, progress=False), predict_probs(small, TEXT, progress=False))


def _du(folder: Path) -> int:
    return int(subprocess.run(["du", "-sk", str(folder)], capture_output=True, text=True).stdout.split()[0])


def test_pipeline_cache_is_compact_and_rebuilds_a_damaged_delta(tiny_encoder_dir, tmp_path, capsys):
    torch.set_num_threads(1)
    cfg = make_config(
        "paper", targets=("es",), data_dir=FIXTURES, encoder=str(tiny_encoder_dir), out_dir=tmp_path,
        variants=("src",), seeds=1, epochs=1, batch_size=4, max_length=32, freeze_layers=1, workers=1,
    )  # fmt: skip
    first = run_pipeline(cfg, progress=False)
    models = [r for r in first.records if r.stage == "model"]
    assert models and all((r.folder / "model" / DELTA_FILE).is_file() for r in models)
    assert not list(cfg.cache_root.rglob("model.safetensors"))
    exported = first.exports["es"]["src"]
    assert (exported / "model.safetensors").is_file() and not (exported / DELTA_FILE).exists()
    with capsys.disabled():
        print(f"\ntiny pipeline: stage cache {_du(cfg.cache_root)} KiB, export {_du(exported)} KiB")
    delta = models[0].folder / "model" / DELTA_FILE
    data = bytearray(delta.read_bytes())
    data[-1] ^= 0x01  # a flipped bit in a weight: only the cache's checksum can see it
    delta.write_bytes(bytes(data))
    again = run_pipeline(cfg, progress=False)
    rebuilt = [r for r in again.records if r.stage == "model"]
    assert rebuilt and not rebuilt[0].cached
    assert again.results["es"]["src"]["f1"] == first.results["es"]["src"]["f1"]


def test_cli_train_writes_complete_folders_unless_asked(tiny_encoder_dir, tmp_path, capsys):
    from unitrans.cli import main

    data = FIXTURES / "en" / "train.txt"
    common = ["train", "--train", str(data), "--encoder", str(tiny_encoder_dir), "--epochs", "1",
              "--freeze-layers", "1", "--max-length", "16"]  # fmt: skip
    assert main([*common, "--out", str(tmp_path / "full")]) == 0
    assert main([*common, "--out", str(tmp_path / "small"), "--compact"]) == 0
    assert (tmp_path / "full" / "model.safetensors").is_file()
    assert not (tmp_path / "full" / DELTA_FILE).exists()
    assert (tmp_path / "small" / DELTA_FILE).is_file()
    assert not (tmp_path / "small" / "model.safetensors").exists()
    capsys.readouterr()
