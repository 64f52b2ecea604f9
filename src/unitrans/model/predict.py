"""Per-word label probabilities from a checkpoint, and their compact on-disk form.

Prediction runs windows longest-first in token-budgeted batches (little padding), with the model cast
to bf16 where that is native, without grad, and applies the head to first subwords only. Every word gets
exactly one probability row, from the window that owns it (see `unitrans.model.windows`).

Probabilities are stored as one .npz: a concatenated (total_words, L) matrix (float32 by default,
float16 on request for half the size), sentence offsets and the label list.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from unitrans.atomic import atomic_path
from unitrans.data import Sentence
from unitrans.errors import UnitransError
from unitrans.model import runtime
from unitrans.model.shared_states import StateStore, bottom_digest, states_key
from unitrans.model.tagger import (
    check_tagger_folder,
    embed,
    encoder_layers,
    is_checkpoint,
    load_tagger,
    read_metadata,
    word_logits,
)
from unitrans.model.windows import make_windows
from unitrans.train.batching import flat_positions, pad_ids, sorted_batches


def model_labels(model_dir: Path) -> list[str]:
    """The checkpoint's labels in column order (from its config's id2label)."""
    from transformers import AutoConfig

    check_tagger_folder(Path(model_dir))
    try:
        config = AutoConfig.from_pretrained(model_dir, trust_remote_code=False)
        return [config.id2label[i] for i in range(config.num_labels)]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UnitransError(f"{model_dir}: cannot read the checkpoint's labels ({err})") from None


MIN_BATCHES_PER_PART = 3
"""`processes` > 1 shares out only calls with at least this many batches per process."""


def resolve_processes(processes: int, device: torch.device) -> int:
    """A `--processes` option resolved: 0 is one per torch thread on a CPU; a GPU predicts in one process."""
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 0:
        raise UnitransError(f"--processes must be 0 (one per thread) or more, got {processes!r}")
    if device.type != "cpu":
        return 1
    return processes or torch.get_num_threads()


def check_batch_size(batch_size: int) -> int:
    """Inference batches hold at least one window; 0 or less would never make progress."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UnitransError(f"batch size must be a whole number >= 1, got {batch_size!r}")
    return batch_size


@torch.no_grad()
def predict_probs(
    model_dir: Path,
    sentences: Sequence[Sentence],
    *,
    batch_size: int = 64,
    progress: bool = True,
    device: str | None = None,
    bf16: bool | None = None,
    max_length: int | None = None,
    max_tokens: int = 8192,
    processes: int = 1,
    states: StateStore | None = None,
) -> list[np.ndarray]:
    """Per sentence a (n_words, L) float32 matrix of label probabilities, columns in `model_labels` order.

    `states`: a store of bottom-layer states shared with other models of the same encoder (see
    `unitrans.model.shared_states`); the probabilities are the same with or without it."""
    check_batch_size(batch_size)
    runtime.pick_device(device)  # a missing device is one line before the model loads
    model, tokenizer = load_tagger(Path(model_dir))
    if max_length is None:
        max_length = checkpoint_max_length(Path(model_dir), model)
    return predict_loaded(
        model,
        tokenizer,
        sentences,
        batch_size=batch_size,
        progress=progress,
        device=device,
        bf16=bf16,
        max_length=max_length,
        max_tokens=max_tokens,
        processes=processes,
        states=states,
        frozen_layers=checkpoint_frozen_layers(Path(model_dir)) if states is not None else 0,
    )


@torch.no_grad()
def predict_loaded(
    model,
    tokenizer,
    sentences: Sequence[Sentence],
    *,
    max_length: int,
    batch_size: int = 64,
    progress: bool = True,
    device: str | None = None,
    bf16: bool | None = None,
    max_tokens: int = 8192,
    processes: int = 1,
    states: StateStore | None = None,
    frozen_layers: int = 0,
) -> list[np.ndarray]:
    """`predict_probs` for a tagger already in memory (several inputs, one load; timing without I/O).

    `processes` > 1 (CPU only): the batches shared out among that many forked processes of one thread
    each (`runtime.forked_map`); the probabilities are the same, since a forward pass does not depend
    on the thread count.

    With `states` and `frozen_layers` k > 0 the forward is split at layer k: the output of the
    embeddings and layers [0, k) comes from the store (computed here, in this process, and kept there
    when missing), then layers [k, L) run on it; the same operations as the whole forward."""
    check_batch_size(batch_size)
    dev = runtime.pick_device(device)
    use_bf16 = runtime.use_bf16(dev, bf16)
    # Inference needs no fp32 master weights: a bf16 copy of the model skips autocast's per-batch casts.
    model.to(dev, dtype=torch.bfloat16 if use_bf16 else torch.float32).eval()
    n_labels = model.config.num_labels
    windows = make_windows(tokenizer, sentences, max_length)
    out = [np.zeros((len(s), n_labels), dtype=np.float32) for s in sentences]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    lengths = [len(w) for w in windows]
    batches = sorted_batches(lengths, batch_size, max_tokens)
    padded = [pad_ids([windows[i].input_ids for i in batch], pad_id) for batch in batches]
    k = frozen_layers if states is not None else 0
    bottom = None
    if k > 0 and batches:

        @torch.no_grad()
        def compute() -> list[torch.Tensor]:
            return [
                encoder_layers(model, embed(model, ids.to(dev)), mask.to(dev), 0, k) for ids, mask in padded
            ]

        key = states_key(bottom_digest(model, k), k, [ids for ids, _ in padded], dev)
        bottom = states.get(key, len(batches), compute)
    # A fork per call pays off only with a few batches per part (`unitrans tag` calls this per batch of
    # lines: with its default 256 lines, two batches, parts ran slower than one process).
    parts = processes if dev.type == "cpu" and len(batches) >= MIN_BATCHES_PER_PART * processes else 1
    bar = tqdm(total=sum(len(s) for s in sentences), desc="predicting", unit="word", disable=not progress)

    @torch.no_grad()
    def run(part: int) -> list[np.ndarray]:
        """Probabilities of every `parts`-th batch from `part` on (batches are longest first: balanced)."""
        found = []
        for b in range(part, len(batches), parts):
            rows = [windows[i] for i in batches[b]]
            ids, mask = padded[b]
            ids, mask = ids.to(dev), mask.to(dev)
            where = flat_positions([w.positions for w in rows], ids.shape[1]).to(dev)
            if bottom is None:
                logits = word_logits(model, embed(model, ids), mask, 0, where)
            else:
                logits = word_logits(model, bottom[b].to(dev), mask, k, where)
            found.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
            if part == 0:
                bar.update(len(where))  # the other parts' words are counted when they arrive
        return found

    for part, found in enumerate(runtime.forked_map(run, parts)):
        for batch, probs in zip(batches[part::parts], found, strict=True):
            if part:
                bar.update(len(probs))
            start = 0
            for i in batch:
                w = windows[i]
                n = len(w.word_ids)
                out[w.sentence][w.word_ids] = probs[start : start + n]
                start += n
    bar.close()
    return out


def _trained_setting(model_dir: Path, name: str) -> Any:
    """A training setting the checkpoint's metadata records, or None (not a unitrans checkpoint)."""
    return read_metadata(model_dir).get("config", {}).get(name) if is_checkpoint(model_dir) else None


def checkpoint_frozen_layers(model_dir: Path) -> int:
    """How many bottom layers the checkpoint's training kept frozen (its metadata; 0 when unknown).
    Only a hint of where to split: what is shared is decided by the weights' digest."""
    value = _trained_setting(model_dir, "freeze_layers")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def checkpoint_max_length(model_dir: Path, model) -> int:
    """The window length a checkpoint was trained with (its metadata), else the encoder's limit up to 128:
    prediction, tagging and word states cut text the way training did."""
    value = _trained_setting(model_dir, "max_length")
    if value:
        return int(value)
    return min(128, int(getattr(model.config, "max_position_embeddings", 512)))


def save_probs(
    path: Path, probs: Sequence[np.ndarray], labels: Sequence[str], *, dtype: type = np.float32
) -> None:
    """One .npz: one matrix of all words (float32, or float16 for half the size), sentence offsets,
    labels; written atomically."""
    path = Path(path)
    for k, p in enumerate(probs):
        if p.ndim != 2 or p.shape[1] != len(labels):
            raise ValueError(f"sentence {k}: probs shape {p.shape}, expected (n, {len(labels)})")
    lengths = np.asarray([len(p) for p in probs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    matrix = np.concatenate(probs).astype(dtype) if len(probs) else np.zeros((0, len(labels)), dtype)
    with atomic_path(path, suffix=".npz") as tmp:  # the umask's mode, not mkstemp's 0600
        np.savez_compressed(tmp, probs=matrix, offsets=offsets, labels=np.asarray(list(labels), dtype=str))


def load_probs(path: Path) -> tuple[list[np.ndarray], list[str]]:
    """Inverse of `save_probs`: per-sentence float32 matrices and the label list."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            matrix, offsets, labels = data["probs"], data["offsets"], data["labels"]
    except (OSError, KeyError, ValueError) as err:
        raise UnitransError(f"{path}: not a unitrans probability file ({err})") from err
    matrix = matrix.astype(np.float32)
    probs = [matrix[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
    return probs, [str(x) for x in labels]
