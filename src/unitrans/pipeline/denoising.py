"""The stages of `--set denoise=neighbours` (see `unitrans.train.denoise` for the method and its sources).

* `targets`: the student's targets on D_T denoised, from one soft teacher's probabilities (and the votes
  when the student learns from them), neighbours in that teacher's own representation space (CoLaDa finds
  the neighbours of D_T words with the model that labelled them). Writes probs.npz and votes.npz as
  `probabilities`/`votes` do, so `distillation.student` reads it as either.
* `trans_weights`: CoLaDa's per-word weights for D_trans, neighbours in Θsrc's space (a model not trained
  on D_trans, so it has not memorised the labels being checked; CoLaDa's M_tgt, which is M_src in its
  first iteration). Θtrans and Θteach then train on D_trans with these weights.

Which teacher: the student's soft teacher (Θteach for `unitrans`, Θsrc for `teacher-src`, Θteach for
`no-soft`'s votes); for an ensemble the averaged probabilities, neighbours in member 0's space. The data
combination model is not reweighted (a baseline). The settings (k, β, α, μ, layers) are in these stages'
keys only; the models and students that use them
get their keys as inputs. Both stages run where they are called (the main process), like `votes`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from unitrans.data.schemes import CONLL_LABELS
from unitrans.errors import UnitransError
from unitrans.model.predict import save_probs
from unitrans.model.word_states import LAST_LAYERS, word_states
from unitrans.pipeline.cache import StageRecord
from unitrans.pipeline.distillation import read_votes
from unitrans.pipeline.stages import Corpus, StageContext, read_probs
from unitrans.train import denoise
from unitrans.train.distill import voting_coverage

DENOISE_MODES = ("none", "neighbours")


def targets(
    ctx: StageContext,
    model: StageRecord,
    soft: StageRecord,
    hard: StageRecord | None,
    data: Corpus,
    *,
    label: str,
) -> StageRecord:
    """Blended soft labels and neighbour-filtered votes of D_T (probs.npz, votes.npz)."""
    cfg = ctx.config

    def build(folder: Path) -> dict[str, Any]:
        probs = read_probs(soft)
        votes = read_votes(hard) if hard is not None else None
        if len(probs) != len(data.sentences) or (votes is not None and len(votes) != len(probs)):
            raise UnitransError("teacher outputs do not cover the unlabelled target text")
        states = word_states(model.folder / "model", data.sentences, progress=ctx.progress)
        neighbours = denoise.knn_indices(states, cfg.denoise_k)
        blended, filtered, rate = denoise.denoise_targets(
            probs, votes, neighbours, CONLL_LABELS, cfg.denoise_beta
        )
        save_probs(folder / "probs.npz", blended, CONLL_LABELS)
        metrics: dict[str, Any] = {"agreement": rate, "words": len(states)}
        if filtered is not None:
            offsets = np.concatenate([[0], np.cumsum([len(h) for h in filtered])]).astype(np.int64)
            flat = np.concatenate(filtered) if filtered else np.zeros(0, np.int64)
            np.savez_compressed(folder / "votes.npz", hard=flat, offsets=offsets)
            metrics["coverage"] = voting_coverage(filtered)
            metrics["coverage_before"] = voting_coverage(votes)
        return metrics

    settings = {"method": "neighbours", "k": cfg.denoise_k, "beta": cfg.denoise_beta, "layers": LAST_LAYERS}
    inputs = {"model": model.key, "soft": soft.key, "data": data.key}
    if hard is not None:
        inputs["hard"] = hard.key
    return ctx.run("denoise", settings, inputs, build, label=label)


def trans_weights(ctx: StageContext, model: StageRecord, dtrans: Corpus, *, label: str) -> StageRecord:
    """CoLaDa's consistency weight of every D_trans word (weights.npz), from Θsrc's representations."""
    cfg = ctx.config

    def build(folder: Path) -> dict[str, Any]:
        sents = dtrans.sentences
        index = {t: i for i, t in enumerate(CONLL_LABELS)}
        try:
            ids = np.asarray([index[t] for s in sents for t in s.tags or ()], dtype=np.int64)
        except KeyError as err:
            raise UnitransError(f"{dtrans.name}: tag {err} is not a CoNLL label") from None
        states = word_states(model.folder / "model", sents, progress=ctx.progress)
        if len(ids) != len(states):
            raise UnitransError(f"{dtrans.name}: every word needs a tag")
        neighbours = denoise.knn_indices(states, cfg.denoise_k)
        weights = denoise.consistency_weights(ids, neighbours, CONLL_LABELS)
        rate = denoise.agrees(ids, neighbours, denoise.entity_types(CONLL_LABELS))
        offsets = np.concatenate([[0], np.cumsum([len(s) for s in sents])]).astype(np.int64)
        np.savez_compressed(folder / "weights.npz", weights=weights, offsets=offsets)
        return {
            "agreement": float(rate.mean()) if len(rate) else 0.0,
            "mean_weight": float(weights.mean()) if len(weights) else 0.0,
            "words": len(ids),
        }

    settings = {
        "method": "colada-consistency",
        "k": cfg.denoise_k,
        "alpha": denoise.COLADA_ALPHA,
        "mu": denoise.COLADA_MU,
        "layers": LAST_LAYERS,
    }
    return ctx.run("trans-weights", settings, {"model": model.key, "dtrans": dtrans.key}, build, label=label)


def read_weights(rec: StageRecord) -> list[np.ndarray]:
    """Per-sentence weights written by `trans_weights` (read without pickle)."""
    with np.load(rec.folder / "weights.npz", allow_pickle=False) as data:
        flat, offsets = data["weights"], data["offsets"]
    return [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
