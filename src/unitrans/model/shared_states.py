"""The frozen bottom layers' output of a text, computed once and reused by every model that has them.

Every model of a run starts from one encoder and keeps its embeddings and bottom k layers frozen, so
Θsrc, Θtrans, Θteach and the students compute the very same bottom states for a text: a paper run used
to compute them three times over the unlabelled target text and four times over each test set (issue
18, item 3). Prediction therefore splits its forward at layer k (`predict_loaded(states=...)`): the
bottom part comes from a `StateStore` when it already holds it, the top part runs as before. The split is
the same sequence of operations on the same tensors as the whole forward (`tagger.encoder_layers`), so
the probabilities are identical to the bit; the tests compare them. Training keeps its own frozen-layer
cache (`train.supervised`): it runs the bottom under autocast from fp32 weights, which gives other
numbers than prediction's bf16 copy of the model.

What may be shared is decided by content, never by names or metadata: the key hashes the bottom weights
and buffers themselves (in the dtype they run in), the architecture's settings, the windows' subword
ids, the batches they run in, the device kind and the torch version. A model whose bottom differs in
one bit, a text cut differently, or another batch size gets its own entry.

Stored as safetensors (no code runs on load): one tensor per batch, padded as it ran. A store decides
where entries live; the pipeline's keeps them in its stage cache (`pipeline.stages.CachedStates`), which
verifies them on reuse and lets two runs that need one entry at once build it once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from unitrans.atomic import atomic_path
from unitrans.errors import UnitransError
from unitrans.model import runtime
from unitrans.model.architectures import family_of

STATES_FILE = "states.safetensors"

# Config fields that label the outputs, or record where a model came from, and change no bottom state.
_NOT_ARCHITECTURE = {
    "id2label",
    "label2id",
    "num_labels",
    "architectures",
    "_name_or_path",
    "torch_dtype",
    "dtype",
    "transformers_version",
    "finetuning_task",
}


class StateStore(Protocol):
    """Where bottom states live between models: `get` returns the entry for `key` (`batches` tensors),
    made by `compute` (and kept) when it is not there yet."""

    def get(
        self, key: str, batches: int, compute: Callable[[], list[torch.Tensor]]
    ) -> list[torch.Tensor]: ...


def _update_tensor(h: Any, name: str, tensor: torch.Tensor) -> None:
    t = tensor.detach().contiguous().cpu().reshape(-1)
    h.update(f"{name}:{t.dtype}:{tuple(tensor.shape)}\n".encode())
    h.update(t.view(torch.uint8).numpy() if t.numel() else b"")


def bottom_digest(model: nn.Module, k: int) -> str:
    """SHA-256 of everything the embeddings and layers [0, k) compute with: their parameters and
    buffers as they are now (dtype included), every buffer of the base model (e.g. rotary
    frequencies), the architecture's settings and the attention implementation."""
    base = model.base_model
    family = family_of(base)
    h = hashlib.sha256()
    config = {k_: v for k_, v in base.config.to_dict().items() if k_ not in _NOT_ARCHITECTURE}
    attn = getattr(base.config, "_attn_implementation", None)
    h.update(json.dumps([family.name, config, attn], sort_keys=True, default=str).encode())
    for m, module in enumerate(family.bottom(base, k)):
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            _update_tensor(h, f"m{m}.{name}", tensor)
    for name, tensor in base.named_buffers():
        _update_tensor(h, f"base.{name}", tensor)
    return h.hexdigest()


def states_key(
    digest: str,
    k: int,
    batches: Sequence[torch.Tensor],
    device: torch.device,
) -> str:
    """Key of a text's bottom states: the bottom's digest, k, the device kind and torch version (other
    kernels may round differently) and every batch's padded ids in order (which fix the windows, the
    tokenizer's cut and the batching)."""
    h = hashlib.sha256(f"{digest}:{k}:{device_kind(device)}:{torch.__version__}\n".encode())
    for ids in batches:
        a = np.ascontiguousarray(ids.cpu().numpy(), dtype=np.int64)
        h.update(f"{a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def device_kind(device: torch.device) -> str:
    """The device as far as its kernels go: the CPU's vector instructions and what its matmul kernels
    compute (AMX and AVX-512 BF16 round bf16 products differently under one capability name), the GPU's
    model."""
    if device.type == "cpu":
        bf16 = "native-bf16" if runtime.cpu_has_native_bf16() else "no-native-bf16"
        kernels = runtime.cpu_kernel_fingerprint()
        return f"cpu:{torch.backends.cpu.get_cpu_capability()}:{bf16}:{kernels}"
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type


def save_states(path: Path, states: Sequence[torch.Tensor]) -> None:
    """One safetensors file, tensor `b<i>` for batch i; written atomically."""
    from safetensors.torch import save_file

    tensors = {f"b{i}": s.detach().contiguous().cpu() for i, s in enumerate(states)}
    with atomic_path(Path(path), suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp))


def load_states(path: Path, batches: int) -> list[torch.Tensor]:
    """Inverse of `save_states`; a file with another number of batches is refused in one line."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as err:
        raise UnitransError(f"{path}: not a unitrans bottom-states file ({err})") from None
    if sorted(tensors) != sorted(f"b{i}" for i in range(batches)):
        raise UnitransError(f"{path}: expected {batches} batches of bottom states, found {len(tensors)}")
    return [tensors[f"b{i}"] for i in range(batches)]
