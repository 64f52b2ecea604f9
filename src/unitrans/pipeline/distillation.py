"""The teacher–student stages of UniTrans (Eqs. 9–14), each one cached call: a teacher ensemble's mean
probabilities, the agreement votes (hard labels), and the distilled student. Split from `stages`, which
holds the stage context and the stages every model shares (training, probabilities, evaluation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unitrans.data.schemes import CONLL_LABELS
from unitrans.errors import UnitransError
from unitrans.model import runtime
from unitrans.model.predict import save_probs
from unitrans.model.runtime import torch_threads
from unitrans.pipeline.cache import StageRecord
from unitrans.pipeline.stages import Corpus, StageContext, read_probs, train_config
from unitrans.train.distill import (
    NO_HARD_LABEL,
    DistillLoss,
    agreement_votes,
    average_probs,
    voting_coverage,
)
from unitrans.train.supervised import train_tagger


def averaged(ctx: StageContext, runs: Sequence[StageRecord], *, label: str) -> StageRecord:
    """Eq. 14: a teacher ensemble's probabilities, the mean over its runs."""
    if len(runs) == 1:
        return runs[0]

    def build(folder: Path) -> dict[str, Any]:
        save_probs(folder / "probs.npz", average_probs([read_probs(r) for r in runs]), CONLL_LABELS)
        return {"runs": len(runs)}

    inputs = {f"run{i}": r.key for i, r in enumerate(runs)}
    return ctx.run("ensemble", {}, inputs, build, label=label)


def votes(ctx: StageContext, voters: Mapping[str, StageRecord], *, label: str) -> StageRecord:
    """Eqs. 10–11: hard labels where every voter's argmax agrees (Θsrc, Θteach, Θtrans; from round 2 of
    self-training also the previous student); records the coverage. Keyed by the voters' names, so
    round 1's key is UniTrans's."""

    def build(folder: Path) -> dict[str, Any]:
        hard = agreement_votes([read_probs(r) for r in voters.values()])
        offsets = np.concatenate([[0], np.cumsum([len(h) for h in hard])]).astype(np.int64)
        flat = np.concatenate(hard) if hard else np.zeros(0, np.int64)
        np.savez_compressed(folder / "votes.npz", hard=flat, offsets=offsets)
        return {"coverage": voting_coverage(hard), "words": int(flat.size)}

    inputs = {name: rec.key for name, rec in voters.items()}
    return ctx.run("votes", {}, inputs, build, label=label)


def entity_share(rec: StageRecord) -> float:
    """Share of words a teacher tags as part of an entity (argmax not O). Label-free: a teacher far
    above the others usually learned from translated data that does not look like target text."""
    probs = read_probs(rec)
    words = sum(len(p) for p in probs)
    if words == 0:
        return 0.0
    outside = list(CONLL_LABELS).index("O")
    return sum(int((p.argmax(-1) != outside).sum()) for p in probs) / words


def read_votes(rec: StageRecord) -> list[np.ndarray]:
    with np.load(rec.folder / "votes.npz") as data:
        flat, offsets = data["hard"], data["offsets"]
    return [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def student(
    ctx: StageContext,
    target_text: Corpus,
    *,
    soft: StageRecord | None,
    hard: StageRecord | None,
    seed: int,
    label: str,
    init: StageRecord | None = None,
    threads: int = 0,
    alone: bool = True,
) -> StageRecord:
    """Distil a student on D_T (Eq. 9): η·L_hard + L_soft, from the pretrained encoder (as published)
    or from a teacher's weights (`init`, the `student_init` setting; `student_merge` blends the trained
    weights back toward them). `threads` > 0: it runs alone with that many threads (`student_threads=all`),
    or in that many one-thread processes (`split`), recorded in its key since the numbers depend on them.
    `alone=False` (a split student the scheduler put in one worker's slot, beside other stages): the same
    parts, computed in turn on the worker's thread; the same numbers and key."""
    cfg = ctx.config
    eta = cfg.eta if hard is not None else 0.0
    loss = DistillLoss(eta=eta, soft_weight=1.0 if soft is not None else 0.0, soft=cfg.soft_loss)
    tc = train_config(cfg, lr=cfg.student_lr, epochs=cfg.student_epochs, seed=seed)
    if cfg.student_batch_size:  # the key holds the batch size, so an equal one keeps the key
        tc = dataclasses.replace(tc, batch_size=cfg.student_batch_size)
    if init is not None and cfg.student_merge > 0:  # WiSE-FT blend with the init; in the key only when set
        tc = dataclasses.replace(tc, merge_init=cfg.student_merge)
    if cfg.student_threads == "split" and threads > 1 and runtime.pick_device(tc.device).type == "cpu":
        tc = dataclasses.replace(tc, processes=threads)  # one part per thread; in the key (results_key)

    def build(folder: Path) -> dict[str, Any]:
        n = len(target_text.sentences)
        if hard is not None:
            hard_labels = read_votes(hard)
        else:
            hard_labels = [np.full(len(s), NO_HARD_LABEL) for s in target_text.sentences]
        soft_targets = read_probs(soft) if soft is not None else None
        if len(hard_labels) != n or (soft_targets is not None and len(soft_targets) != n):
            raise UnitransError("teacher outputs do not cover the unlabelled target text")
        with torch_threads(threads if alone else 0):
            train_tagger(
                target_text.sentences,
                folder / "model",
                tc,
                labels=CONLL_LABELS,
                hard_labels=hard_labels,
                soft_targets=soft_targets,
                loss_fn=loss,
                init=None if init is None else init.folder / "model",
                progress=ctx.progress,
                compact=True,
                side_by_side=alone,
            )
        return {"sentences": n}

    settings = {"eta": loss.eta, "soft_weight": loss.soft_weight, "train": tc.results_key()}
    if soft is not None and loss.soft != "mse":  # the paper's MSE keeps the keys it always had
        settings["soft_loss"] = loss.soft
    inputs = {"data": target_text.key}
    if soft is not None:
        inputs["soft"] = soft.key
    if hard is not None:
        inputs["hard"] = hard.key
    if init is not None:  # only then: keys of students from the pretrained encoder stay as they were
        inputs["init"] = init.key
    if threads and not (cfg.student_threads == "split" and threads == 1):  # likewise: a student that
        settings["threads"] = threads  # shares the threads, or is split into one part, keeps its key
    work = target_text.words() * cfg.student_epochs
    cores = threads if alone and threads > 1 else 1  # alone: all threads, or one part per thread
    return ctx.run(
        "student", settings, inputs, build, label=label, seed=seed, resumable=True, work=work, cores=cores
    )
