"""Bottom-layer states shared between models of one encoder (`unitrans.model.shared_states`, issue 18
item 3): with a store, prediction gives the very same probabilities as without, for every family; a
second model with the same frozen bottom reuses the entry instead of computing it; anything that changes
the bottom states (weights, batching, the text) gets its own entry; the pipeline keeps entries in its
cache and its results do not change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_FAMILIES, tiny_train_sentences
from unitrans.data import Sentence
from unitrans.errors import UnitransError
from unitrans.model.predict import predict_probs
from unitrans.model.shared_states import bottom_digest, load_states, save_states, states_key
from unitrans.model.tagger import load_tagger
from unitrans.pipeline.cache import StageCache
from unitrans.pipeline.stages import CachedStates
from unitrans.train.supervised import TrainConfig, train_tagger

TRAIN = tiny_train_sentences() * 4
TEXT = [*tiny_train_sentences(), Sentence(tuple("Mary met John Smith in London and Paris".split() * 3))]


class DictStore:
    """A store in memory that counts what it had to compute."""

    def __init__(self) -> None:
        self.entries: dict[str, list[torch.Tensor]] = {}
        self.computed: list[str] = []

    def get(self, key, batches, compute):
        if key not in self.entries:
            self.entries[key] = compute()
            self.computed.append(key)
        assert len(self.entries[key]) == batches
        return self.entries[key]


def config(encoder: Path, **kw) -> TrainConfig:
    base = dict(encoder=str(encoder), epochs=1, batch_size=4, freeze_layers=1, max_length=12, lr=1e-2)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module", params=list(TINY_FAMILIES))
def models(request, tmp_path_factory) -> tuple[Path, Path, Path]:
    """Per family: a model from the encoder, one fine-tuned from it (Θteach's way; same frozen bottom),
    and one trained with nothing frozen (another bottom)."""
    encoder = request.getfixturevalue(TINY_FAMILIES[request.param])
    root = tmp_path_factory.mktemp(f"shared-{request.param}")
    first = train_tagger(TRAIN, root / "first", config(encoder), progress=False)
    second = train_tagger(TRAIN[:6], root / "second", config(encoder, seed=7), init=first, progress=False)
    unfrozen = train_tagger(TRAIN, root / "unfrozen", config(encoder, freeze_layers=0), progress=False)
    return first, second, unfrozen


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_a_store_gives_the_same_bits_and_the_second_model_reuses_the_entry(models):
    first, second, unfrozen = models
    plain = [predict_probs(m, TEXT, progress=False, batch_size=2) for m in models]
    store = DictStore()
    shared = [predict_probs(m, TEXT, progress=False, batch_size=2, states=store) for m in (first, second)]
    assert same(plain[0], shared[0]) and same(plain[1], shared[1])
    assert len(store.computed) == 1  # the second model found the first's entry
    # Trained with nothing frozen: its metadata says 0 frozen layers, so it never splits
    assert same(plain[2], predict_probs(unfrozen, TEXT, progress=False, batch_size=2, states=store))
    assert len(store.computed) == 1
    # Another batching is another entry, with the bits of plain prediction in that batching (not those of
    # batches of 2: padding to another length changes the matmul shapes, and fp32 kernels without AVX-512
    # then round otherwise)
    plain3 = predict_probs(second, TEXT, progress=False, batch_size=3)
    assert same(plain3, predict_probs(second, TEXT, progress=False, batch_size=3, states=store))
    assert len(store.computed) == 2


def test_the_key_follows_the_bottom_weights_the_text_and_the_batches(models):
    a, b, c = (load_tagger(m)[0] for m in models)
    assert bottom_digest(a, 1) == bottom_digest(b, 1)
    assert bottom_digest(a, 1) != bottom_digest(c, 1)  # its bottom layer was trained
    assert bottom_digest(a, 1) != bottom_digest(a.to(torch.bfloat16), 1)  # the dtype it runs in
    with torch.no_grad():
        a.base_model.get_input_embeddings().weight[3, 0] += 1.0
    assert bottom_digest(a, 1) != bottom_digest(b, 1)
    cpu = torch.device("cpu")
    ids = [torch.tensor([[1, 2, 3]]), torch.tensor([[4, 5]])]
    key = states_key("d", 1, ids, cpu)
    assert key != states_key("d", 1, [ids[1], ids[0]], cpu)
    assert key != states_key("d", 1, [torch.tensor([[1, 2, 3], [4, 5, 0]])], cpu)
    assert key != states_key("d", 2, ids, cpu) and key != states_key("e", 1, ids, cpu)
    assert key != states_key("d", 1, ids, torch.device("meta"))


def test_the_key_follows_what_the_cpu_kernels_compute(monkeypatch):
    from unitrans.model import runtime

    cpu = torch.device("cpu")
    ids = [torch.tensor([[1, 2, 3]])]
    key = states_key("d", 1, ids, cpu)
    assert key == states_key("d", 1, ids, cpu)
    monkeypatch.setattr(runtime, "cpu_kernel_fingerprint", lambda: "other-kernels")
    assert key != states_key("d", 1, ids, cpu)


def _kind_in_subprocess(env: dict[str, str]) -> str:
    import os
    import subprocess
    import sys

    code = (
        "import torch; from unitrans.model.shared_states import device_kind; "
        "print(device_kind(torch.device('cpu')))"
    )
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True,
                          text=True, check=True)  # fmt: skip
    return done.stdout.strip()


def _cpu_has_amx() -> bool:
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.exists() and "amx_bf16" in cpuinfo.read_text(errors="replace")


@pytest.mark.skipif(
    not _cpu_has_amx(),
    reason="needs a CPU with AMX (bf16 kernels that round otherwise than AVX-512 BF16)",
)
def test_amx_and_avx512_bf16_kernels_are_two_device_kinds():
    """Both report the capability "AVX512" and native bf16; their bf16 products differ in the last bits."""
    amx = _kind_in_subprocess({})
    capped = _kind_in_subprocess({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"})
    assert amx.split(":")[:3] == capped.split(":")[:3]
    assert amx != capped


def test_entries_in_the_stage_cache_are_verified_and_reloaded_bit_for_bit(models, tmp_path, caplog):
    first, second, _ = models
    plain = predict_probs(second, TEXT, progress=False, batch_size=2)
    cache = StageCache(tmp_path / "cache")
    predict_probs(first, TEXT, progress=False, batch_size=2, states=CachedStates(cache, "text"))
    entries = list((tmp_path / "cache" / "bottom-states").iterdir())
    assert len(entries) == 1 and (entries[0] / "states.safetensors").is_file()
    again = predict_probs(second, TEXT, progress=False, batch_size=2, states=CachedStates(cache, "text"))
    assert same(plain, again)  # from the file this time
    # A damaged entry is found by the cache's check, rebuilt with one warning, and the bits stay the same
    states = entries[0] / "states.safetensors"
    states.write_bytes(states.read_bytes()[:-8] + b"\0" * 8)
    rebuilt = predict_probs(second, TEXT, progress=False, batch_size=2, states=CachedStates(cache, "t"))
    assert same(plain, rebuilt)
    assert "damaged cache entry" in caplog.text


def test_a_states_file_is_checked_on_load(tmp_path):
    path = tmp_path / "s.safetensors"
    save_states(path, [torch.zeros(1, 2, 3), torch.ones(2, 1, 3)])
    loaded = load_states(path, 2)
    assert torch.equal(loaded[1], torch.ones(2, 1, 3)) and loaded[0].shape == (1, 2, 3)
    with pytest.raises(UnitransError, match="expected 3 batches"):
        load_states(path, 3)
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(UnitransError, match="not a unitrans bottom-states file"):
        load_states(tmp_path / "bad.safetensors", 1)


@pytest.mark.usefixtures("one_torch_thread")
def test_the_pipeline_shares_bottom_states_and_its_probabilities_do_not_change(tiny_encoder_dir, tmp_path):
    from test_pipeline_e2e import _config
    from unitrans.model.predict import load_probs
    from unitrans.pipeline.runner import run_pipeline

    def probs(config) -> dict[str, list[np.ndarray]]:
        root = config.cache_root / "probs"
        return {folder.name: load_probs(folder / "probs.npz")[0] for folder in root.iterdir()}

    variants = ("src", "trans", "teach", "unitrans")
    shared = _config(tiny_encoder_dir, tmp_path / "shared", variants=variants, ensemble=1)
    run_pipeline(shared, progress=False)
    entries = list((shared.cache_root / "bottom-states").iterdir())
    found = probs(shared)
    # Three teachers on the unlabelled text, four models on the test set: one entry per text
    assert len(found) == 7 and len(entries) == 2
    alone = _config(tiny_encoder_dir, tmp_path / "alone", variants=variants, ensemble=1, share_states=False)
    run_pipeline(alone, progress=False)
    assert not (alone.cache_root / "bottom-states").exists()
    again = probs(alone)
    assert sorted(again) == sorted(found)
    assert all(same(found[key], again[key]) for key in found)
