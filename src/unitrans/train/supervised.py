"""Fine-tune a tagger on word-labelled sentences (Θsrc, Θtrans, Θteach, and the distilled student).

The paper's recipe (AdamW, decay 0.01 except biases/LayerNorm, 10% linear warm-up then linear decay,
clip 1.0, batch 32, 3 epochs), made fast on a CPU by: windows computed once; the frozen embeddings and
bottom layers run once per window and cached (a quarter of the forward and all of the embedding work
gone from every step); length-bucketed batches with dynamic padding (cut by words, see `batching`);
bf16 autocast with fp32 master weights where the hardware has native bf16; the head applied to first
subwords only. Optionally the saved weights are the mean over the run's last steps (`averaging`).

Differences from the Hugging Face Trainer recipe, on purpose: the frozen layers run without dropout
(that is what makes them cacheable; `frozen_dropout=True` restores it and gives up the cache), and no
word is truncated away (long sentences become windows).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from unitrans.atomic import check_writable_dir
from unitrans.data import Sentence
from unitrans.data.schemes import CONLL_LABELS
from unitrans.errors import UnitransError
from unitrans.model import runtime
from unitrans.model.compact import base_for_training
from unitrans.model.tagger import (
    freeze_bottom,
    frozen_states,
    is_checkpoint,
    load_tagger,
    read_metadata,
    save_tagger,
    word_logits,
)
from unitrans.model.windows import Window, make_windows
from unitrans.train import resume
from unitrans.train.averaging import TailAverage, blend_into, trainable_copy
from unitrans.train.batching import bucketed_batches, flat_positions, pad_ids, sorted_batches
from unitrans.train.config import TrainConfig
from unitrans.train.flat_grads import FlatGrads
from unitrans.train.parts import PartWorkers, part_seed, shares, split_rows
from unitrans.train.targets import word_targets

__all__ = [
    "StepHook",
    "TrainConfig",
    "WordLoss",
    "cross_entropy_loss",
    "train_tagger",
    "weighted_cross_entropy",
]

logger = logging.getLogger(__name__)

WordLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
StepHook = Callable[[int, int, torch.nn.Module], None]


def cross_entropy_loss(logits: torch.Tensor, hard: torch.Tensor, soft: torch.Tensor | None) -> torch.Tensor:
    """Default loss: mean cross-entropy over the words that have a hard label (-100 = none)."""
    if not bool((hard != -100).any()):
        return logits.sum() * 0.0
    return torch.nn.functional.cross_entropy(logits, hard, ignore_index=-100)


cross_entropy_loss.divides_by = "labelled"  # type: ignore[attr-defined]  # see `_divides_by_words`


def weighted_cross_entropy(logits: torch.Tensor, hard: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ w_i·CE_i over the words with a hard label, divided by their number (not by Σ w): all weights 1
    give exactly `cross_entropy_loss`, and a word with w < 1 (a doubtful translated label, see
    `unitrans.train.denoise`) pulls less, without the others pulling more."""
    mask = hard != -100
    if not bool(mask.any()):
        return logits.sum() * 0.0
    safe = torch.where(mask, hard, torch.zeros_like(hard))
    nll = torch.nn.functional.cross_entropy(logits, safe, reduction="none")
    return (nll * weights.to(nll.dtype) * mask.to(nll.dtype)).sum() / mask.sum()


def resolve_encoder_name(name: str) -> Path:
    try:
        from unitrans.model.encoders import resolve_encoder
    except ImportError:
        if Path(name).is_dir():
            return Path(name)
        raise UnitransError(
            f"encoder {name!r}: not a folder, and encoder resolution is unavailable"
        ) from None
    return Path(resolve_encoder(name))


def _check_weights(train: Sequence[Sentence], word_weights: Sequence[np.ndarray]) -> list[np.ndarray]:
    if len(word_weights) != len(train):
        raise UnitransError(f"word_weights has {len(word_weights)} entries for {len(train)} sentences")
    out = []
    for k, (sentence, given) in enumerate(zip(train, word_weights, strict=True)):
        w = np.asarray(given, dtype=np.float32).reshape(-1)
        if len(w) != len(sentence) or not (np.isfinite(w).all() and (w >= 0).all()):
            raise UnitransError(
                f"word_weights for sentence {k + 1}: expected {len(sentence)} finite weights ≥ 0"
            )
        out.append(w)
    return out


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _divides_by_words(loss_fn: WordLoss, weighted: bool, processes: int) -> bool:
    """Whether the loss is a sum over the batch's words divided by their number, or by the words with a
    hard label (cross-entropy's mean): a batch in parts needs to know to share it out. A loss says which
    in its `divides_by` attribute ("words" or "labelled")."""
    divides_by = "labelled" if weighted else getattr(loss_fn, "divides_by", None)
    if divides_by not in ("words", "labelled") and processes > 1:
        raise UnitransError("processes > 1 needs a loss that declares divides_by = 'words' or 'labelled'")
    return divides_by == "words"


def _update(grads: FlatGrads, trainable: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer,
            scheduler: Any, config: TrainConfig, flat_ok: bool) -> bool:  # fmt: skip
    """Clip, step and zero after a step's backward passes; returns whether the gradients are still flat."""
    flat_ok = flat_ok and grads.check()
    if not flat_ok and config.processes > 1:
        raise RuntimeError("gradients left their flat buffer, which the batch parts add into")
    if config.max_grad_norm > 0:
        if flat_ok:
            grads.clip_(config.max_grad_norm)
        else:
            torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
    optimizer.step()
    scheduler.step()
    if flat_ok:
        grads.zero()
    else:
        optimizer.zero_grad(set_to_none=True)
    return flat_ok


def _cache_frozen(
    model, windows: list[Window], k: int, pad_id: int, device: torch.device, bf16: bool, progress: bool
) -> list[torch.Tensor]:
    """Frozen-layer output of every window (fp32, unpadded), computed in length-sorted batches."""
    cache: list[torch.Tensor | None] = [None] * len(windows)
    lengths = [len(w) for w in windows]
    batches = sorted_batches(lengths, batch_size=128, max_tokens=16384)
    bar = tqdm(total=sum(lengths), desc="frozen layers", unit="tok", disable=not progress, leave=False)
    for batch in batches:
        ids, mask = pad_ids([windows[i].input_ids for i in batch], pad_id)
        with runtime.autocast(device, bf16):
            states = frozen_states(model, ids.to(device), mask.to(device), k).float()
        for row, i in enumerate(batch):
            cache[i] = states[row, : lengths[i]].clone()
        bar.update(int(mask.sum()))
    bar.close()
    return cache  # type: ignore[return-value]


def train_tagger(
    train: Sequence[Sentence],
    out_dir: Path,
    config: TrainConfig,
    *,
    labels: Sequence[str] = CONLL_LABELS,
    init: Path | None = None,
    hard_labels: Sequence[np.ndarray] | None = None,
    soft_targets: Sequence[np.ndarray] | None = None,
    loss_fn: WordLoss | None = None,
    word_weights: Sequence[np.ndarray] | None = None,
    progress: bool = True,
    on_step: StepHook | None = None,
    compact: bool = False,
    side_by_side: bool = True,
) -> Path:
    """Train and save a checkpoint folder; resumes from `out_dir`'s state file if a run was interrupted.

    `compact` saves only what training changed, referring to the base encoder (the pipeline's cache);
    the default is a complete folder that loads on its own.

    `on_step(done, total, model)` is called after every optimizer step (benchmarks use it to keep weight
    averages of several spans from one run); it is not called for steps skipped on resume.

    `word_weights` (per sentence, one weight ≥ 0 per word) weigh each word's cross-entropy
    (`weighted_cross_entropy`); they go with the default loss only.

    `side_by_side=False` computes the `config.processes` parts of each step in turn, in this process, on
    one thread: the same bits as side by side (`parts.PartWorkers`), for a scheduler that has one core
    free, not P (a resumed run may take either way).
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    labels = list(labels)
    if not train:
        raise UnitransError("no training sentences")
    # Before any work: a missing device or an unwritable output is one line now, not after the training.
    device = runtime.pick_device(config.device)
    if config.processes > 1 and device.type != "cpu":
        raise UnitransError(f"processes > 1 splits batches across CPU processes; the device is {device}")
    check_writable_dir(out_dir, "output folder")
    resume.remove_stale_temps(out_dir)  # a killed state save leaves a ~100 MB temp file behind
    hard, soft = word_targets(train, labels, hard_labels, soft_targets)
    weights = None if word_weights is None else _check_weights(train, word_weights)
    if weights is not None and loss_fn is not None:
        raise ValueError("word_weights go with the default cross-entropy loss, not a custom loss_fn")
    loss_fn = loss_fn or cross_entropy_loss
    if config.merge_init > 0 and init is None:
        raise UnitransError("merge_init blends the trained weights with an init checkpoint: give one (init)")
    source = Path(init) if init is not None else resolve_encoder_name(config.encoder)
    encoder_name = read_metadata(source)["encoder"] if is_checkpoint(source) else config.encoder
    key = resume.fingerprint(
        [config.results_key(), labels, str(init), getattr(loss_fn, "__qualname__", str(loss_fn))]
        + [list(s.words) for s in train]
        + hard
        + (soft or [])
        + ([["weights"], *weights] if weights is not None else [])
    )
    if is_checkpoint(out_dir) and read_metadata(out_dir).get("fingerprint") == key:
        logger.info("%s already holds this exact training run; not retraining", out_dir)
        return out_dir

    bf16 = runtime.use_bf16(device, config.bf16)
    torch.manual_seed(config.seed)  # the new head's init
    model, tokenizer = load_tagger(source, labels, dropout=config.dropout)
    model.to(device)
    k = config.freeze_layers
    freeze_bottom(model, k)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    t0 = time.perf_counter()
    windows = make_windows(tokenizer, train, config.max_length)
    hard_w = [torch.from_numpy(hard[w.sentence][w.word_ids]) for w in windows]
    soft_w = None if soft is None else [torch.from_numpy(soft[w.sentence][w.word_ids]) for w in windows]
    weight_w = (
        None if weights is None else [torch.from_numpy(weights[w.sentence][w.word_ids]) for w in windows]
    )
    cacheable = config.cache_frozen and not config.frozen_dropout
    cache = _cache_frozen(model, windows, k, pad_id, device, bf16, progress) if cacheable else None
    prep_seconds = time.perf_counter() - t0

    # Every epoch's batches are a pure function of (seed, epoch): planned up front for the schedule's length.
    lengths = [len(w) for w in windows]
    words = [len(w.positions) for w in windows] if config.batch_by == "words" else None
    plan = [
        bucketed_batches(lengths, config.batch_size, seed=config.seed, epoch=e, words=words)
        for e in range(config.epochs)
    ]
    offsets = np.cumsum([0] + [len(batches) for batches in plan]).tolist()
    total = offsets[-1]
    # Length-bucketed batches of `batch_size` hold very different numbers of words (32 headlines vs 32 long
    # sentences), so a per-batch mean gives a word in a short batch many times the weight of one in a long
    # batch; "word" weighting rescales each batch's mean by its share of words, as random batches would.
    mean_words = sum(len(w.positions) for w in windows) / len(plan[0])
    trainable = [p for p in model.parameters() if p.requires_grad]
    grads = FlatGrads(trainable)
    flat_ok = True
    # fused: one kernel per step instead of ~10 small ops per parameter (each a thread sync on a CPU)
    optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.lr, fused=True)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(config.warmup_ratio * total), total)
    average = TailAverage(model, total, config.average_last) if config.average_last > 0 else None
    init_weights = trainable_copy(model) if config.merge_init > 0 else None  # before a resume loads state
    start = resume.load_state(
        out_dir, model=model, optimizer=optimizer, scheduler=scheduler, key=key, average=average
    )

    per_word = _divides_by_words(loss_fn, weights is not None, config.processes)

    def part_count(batch: np.ndarray) -> int:
        """The part's share of its loss's normaliser: its words, or its words with a hard label."""
        if per_word:
            return sum(len(hard_w[j]) for j in batch)
        return sum(int((hard_w[j] != -100).sum()) for j in batch)

    def part_backward(
        step: int, part: int, batch: np.ndarray, share: float, batch_words: int
    ) -> tuple[float, int]:
        """Forward and backward of `batch`: a whole batch, or part `part` of one (`share` of its loss's
        normaliser; `batch_words` in the whole batch); returns the loss and the subword tokens."""
        rows = [windows[j] for j in batch]
        ids, mask = pad_ids([w.input_ids for w in rows], pad_id)
        mask = mask.to(device)
        where = flat_positions([w.positions for w in rows], ids.shape[1]).to(device)
        target = torch.cat([hard_w[j] for j in batch]).to(device)
        soft_t = None if soft_w is None else torch.cat([soft_w[j] for j in batch]).to(device)
        with runtime.fork_rng(device):
            torch.manual_seed(part_seed(config.seed, step, part))
            with runtime.autocast(device, bf16):
                if cache is not None:
                    hidden = torch.nn.utils.rnn.pad_sequence([cache[j] for j in batch], batch_first=True)
                else:
                    hidden = frozen_states(model, ids.to(device), mask, k, dropout=config.frozen_dropout)
                logits = word_logits(model, hidden, mask, k, where)
            if weight_w is None:
                loss = loss_fn(logits.float(), target, soft_t)
            else:
                w_t = torch.cat([weight_w[j] for j in batch]).to(device)
                loss = weighted_cross_entropy(logits.float(), target, w_t)
            if config.processes > 1:  # this part's share of the batch's mean
                loss = loss * share
            if config.loss_weighting == "word":
                loss = loss * (batch_words / mean_words)
            loss.backward()
        return float(loss.detach()), int(mask.sum())

    workers = PartWorkers(part_backward, trainable, grads.buffer, config.processes, side_by_side)
    model.train()
    tokens_done, loss_ema = 0, None
    t_train = time.perf_counter()
    bar = tqdm(total=total, initial=start, desc="training", unit="step", disable=not progress)
    with workers, runtime.torch_threads(workers.threads if config.processes > 1 else 0):
        for epoch, batches in enumerate(plan):
            for i, batch in enumerate(batches):
                step = offsets[epoch] + i
                if step < start:
                    continue
                pieces = split_rows(batch, config.processes)
                batch_words = sum(len(windows[j].positions) for j in batch)
                part_shares = shares([part_count(piece) for piece in pieces])
                value, tokens = workers.step(step, pieces, part_shares, batch_words)
                flat_ok = _update(grads, trainable, optimizer, scheduler, config, flat_ok)
                tokens_done += tokens
                loss_ema = value if loss_ema is None else 0.98 * loss_ema + 0.02 * value
                bar.update(1)
                bar.set_postfix(
                    loss=f"{loss_ema:.4f}", tok_s=f"{tokens_done / (time.perf_counter() - t_train):.0f}"
                )
                done = step + 1
                if average is not None:
                    average.update(done)
                if on_step is not None:
                    on_step(done, total, model)
                if done < total and (done % config.save_every == 0 or done in offsets):
                    resume.save_state(out_dir, model=model, optimizer=optimizer, scheduler=scheduler,
                                      step=done, key=key, average=average)  # fmt: skip
    bar.close()
    train_seconds = time.perf_counter() - t_train
    if average is not None:
        average.copy_to(model)
    if init_weights is not None:
        blend_into(model, init_weights, config.merge_init)

    metadata = {
        "labels": labels,
        "encoder": encoder_name,
        "encoder_folder": str(source),
        "init": None if init is None else str(init),
        "config": config.to_dict(),
        "seed": config.seed,
        "bf16": bf16,
        "device": str(device),
        "fingerprint": key,
        "train": {
            "sentences": len(train),
            "windows": len(windows),
            "steps": total,
            "resumed_from_step": start,
            "subword_tokens_trained": tokens_done,
        },
        "timings": {
            "prepare_seconds": round(prep_seconds, 3),
            "train_seconds": round(train_seconds, 3),
            "total_seconds": round(time.perf_counter() - started, 3),
            "train_tokens_per_second": round(tokens_done / max(train_seconds, 1e-9), 1),
            "peak_memory_mib": round(runtime.peak_memory_mib(), 1),
        },
    }
    model.cpu()
    base = base_for_training(source, encoder_name) if compact else None
    if compact and base is None:
        logger.info("%s: the encoder is not a bare encoder folder; saving a complete checkpoint", out_dir)
    save_tagger(model, tokenizer, out_dir, metadata, base=base)
    resume.clear_state(out_dir)
    return out_dir
