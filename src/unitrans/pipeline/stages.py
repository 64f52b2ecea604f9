"""The pipeline's stages, each one cached call: translation, model training, probabilities,
evaluation; the teacher–student stages (ensembles, votes, the student) are in `pipeline.distillation`.

Every stage takes the keys of its inputs and its own settings, so `StageCache` can skip it when
nothing it depends on changed. Target labels are read only by `evaluate` (test set); the target train
file is read through `read_unlabelled` and only its words ever reach a stage.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unitrans.data import Sentence, read_conll, read_unlabelled, write_conll
from unitrans.data.schemes import CONLL_LABELS
from unitrans.errors import UnitransError
from unitrans.eval.metrics import entity_scores
from unitrans.model.predict import load_probs, model_labels, predict_probs, save_probs
from unitrans.model.shared_states import STATES_FILE, load_states, save_states
from unitrans.model.viterbi import decode_tags
from unitrans.pipeline.cache import StageCache, StageRecord, hash_rows
from unitrans.pipeline.config import PipelineConfig
from unitrans.pipeline.eta import PlannedStage, RunProgress, duration, planned
from unitrans.pipeline.parallel import NotCached
from unitrans.train.supervised import TrainConfig, train_tagger

logger = logging.getLogger(__name__)

StageHook = Callable[[StageRecord], None]


@dataclass(frozen=True)
class Corpus:
    """Sentences read for the pipeline, with a content key (words, plus tags when labelled)."""

    name: str
    sentences: list[Sentence]
    key: str

    def words(self) -> int:
        return sum(len(s.words) for s in self.sentences)


@dataclass
class StageContext:
    """What every stage needs: the cache, the config, and where to report what happened."""

    cache: StageCache
    config: PipelineConfig
    progress: bool = True
    records: list[StageRecord] = field(default_factory=list)
    after_stage: StageHook | None = None
    """Called after each stage (cached or not); tests raise from it to simulate a killed run."""
    probe: bool = False
    """Only look stages up: return cached records, raise `NotCached` for the rest (see `parallel`)."""
    log_done: bool = True
    """Log each stage's start and end; off in worker processes: the main process logs their stages (the pool
    announces a stage when it hands it to a worker), so every progress line comes from one process."""
    started: float = field(default_factory=time.monotonic)
    """When the run began (for the elapsed time in each stage's line)."""
    eta: RunProgress | None = None
    """The run's plan, for the stages left and the time left in each stage's end line (see `eta`)."""
    plan: list[PlannedStage] | None = None
    """Planning (see `runner`): look every stage up and list it here instead of running it; a stage not
    cached yields a record with its key and no folder, so the stages after it get their keys too."""

    def run(
        self,
        stage: str,
        settings: Mapping[str, Any],
        inputs: Mapping[str, str],
        build: Callable[[Path], Mapping[str, Any] | None],
        *,
        label: str,
        seed: int | None = None,
        resumable: bool = False,
        work: float = 1.0,
        cores: int = 1,
    ) -> StageRecord:
        """Look the stage up in the cache, build it if missing, log and record it. `work` (words × passes
        for sized stages) and `cores` (how many it runs on: more than one for a student alone) only size
        the time estimate."""
        if self.plan is not None:
            rec = self.cache.lookup(stage, settings, inputs, label=label)
            if rec is None:
                key = self.cache.key(stage, settings, inputs)
                rec = StageRecord(stage, label, key, self.cache.folder(stage, key), False, 0.0, cores=cores)
            self.plan.append(planned(rec, inputs, work))
            return rec
        if self.probe:
            found = self.cache.lookup(stage, settings, inputs, label=label)
            if found is None:
                raise NotCached(label)
            return found
        runtime = {"threads": torch.get_num_threads(), "cores": cores}  # threads: numbers depend on it

        def announced(folder: Path) -> Mapping[str, Any] | None:
            self.announce(label)  # only stages that really run: a cached one is not built
            return build(folder)

        rec = self.cache.run(
            stage, settings, inputs, announced, label=label, seed=seed, resumable=resumable, runtime=runtime
        )
        return self.adopt(rec)

    def announce(self, label: str) -> None:
        """A stage starts (here, or in a worker the pool hands it to)."""
        if self.log_done:
            logger.info("%s: started", label)
        if self.eta is not None:
            self.eta.started(label)

    def adopt(self, rec: StageRecord) -> StageRecord:
        """Log and record a stage of this run (also one that a worker process ran)."""
        self.records.append(rec)
        left = "" if self.eta is None else f"; {self.eta.finished(rec)}"
        if self.log_done and rec.cached:
            logger.info("%s: cached, skipped", rec.label)
        elif self.log_done:
            ran = sum(not r.cached for r in self.records)
            logger.info(
                "%s: done in %s (%d stage%s run so far, %s into the run%s)", rec.label, duration(rec.seconds),
                ran, "" if ran == 1 else "s", duration(time.monotonic() - self.started), left,
            )  # fmt: skip
        if self.after_stage is not None:
            self.after_stage(rec)
        return rec


def _subsample(sentences: list[Sentence], limit: int) -> list[Sentence]:
    """A fixed random subset (seed 0, original order kept), the same for every run seed."""
    if not limit or len(sentences) <= limit:
        return sentences
    keep = np.sort(np.random.default_rng(0).choice(len(sentences), size=limit, replace=False))
    return [sentences[i] for i in keep]


def _lang_file(config: PipelineConfig, lang: str, name: str) -> Path:
    path = config.data_dir / lang / name
    if not path.is_file():
        raise UnitransError(f"{path}: file not found (expected <data_dir>/<lang>/{name})")
    return path


def read_source(config: PipelineConfig) -> Corpus:
    """The labelled source train set (subsampled as configured)."""
    path = _lang_file(config, config.source, "train.txt")
    sents = _subsample(read_conll(path), config.max_source_sentences)
    return Corpus(f"{config.source}/train", sents, hash_rows([*s.words, "|", *(s.tags or ())] for s in sents))


def read_target_text(config: PipelineConfig, lang: str) -> tuple[Corpus, Corpus]:
    """D_T, the target train file as unlabelled text (any tag column is ignored by the reader), and the
    text the lexicon's target word vectors come from: D_T itself, or its own fixed sample of
    `translate_sentences` (the same sample as `max_target_sentences` of that size would give)."""
    raw = read_unlabelled(_lang_file(config, lang, "train.txt"))

    def sample(limit: int) -> Corpus:
        sents = [s.unlabelled() for s in _subsample(raw, limit)]
        return Corpus(f"{lang}/train (unlabelled)", sents, hash_rows(s.words for s in sents))

    text = sample(config.max_target_sentences)
    if config.translate_sentences in (0, config.max_target_sentences):
        return text, text
    return text, sample(config.translate_sentences)


def read_target_test(config: PipelineConfig, lang: str) -> Corpus:
    """The labelled target test set: used for the final evaluation and nothing else."""
    sents = read_conll(_lang_file(config, lang, "test.txt"))
    _lang_file(config, lang, "train.txt")  # a missing train file is an error even when test exists
    return Corpus(f"{lang}/test", sents, hash_rows([*s.words, "|", *(s.tags or ())] for s in sents))


def train_config(config: PipelineConfig, *, lr: float, epochs: int, seed: int) -> TrainConfig:
    return TrainConfig(
        encoder=config.encoder,
        epochs=epochs,
        lr=lr,
        batch_size=config.batch_size,
        batch_by=config.batch_by,
        loss_weighting=config.loss_weighting,
        average_last=config.average_last,
        seed=seed,
        max_length=config.max_length,
        freeze_layers=config.freeze_layers,
    )


def train_model(
    ctx: StageContext,
    kind: str,
    data: Corpus,
    *,
    seed: int,
    lr: float,
    epochs: int,
    init: StageRecord | None = None,
    extra: Sequence[Corpus] = (),
    weights: StageRecord | None = None,
    lang: str | None = None,
) -> StageRecord:
    """Train one tagger (Θsrc, Θtrans, Θteach = init Θsrc, data combination = data + extra); `weights`
    (a `denoising.trans_weights` record) weigh the words of `data` in the loss, extra words weigh 1.
    `lang` names the target language of a model trained on its data in logs and reports (not in the key)."""
    tc = train_config(ctx.config, lr=lr, epochs=epochs, seed=seed)
    inputs = {"data": data.key, **{f"extra{i}": c.key for i, c in enumerate(extra)}}
    if init is not None:
        inputs["init"] = init.key
    if weights is not None:  # only then: keys without denoising stay as they were
        inputs["weights"] = weights.key

    def build(folder: Path) -> dict[str, Any]:
        sents = list(data.sentences) + [s for c in extra for s in c.sentences]
        word_weights = None
        if weights is not None:
            from unitrans.pipeline.denoising import read_weights

            word_weights = read_weights(weights) + [
                np.ones(len(s), np.float32) for c in extra for s in c.sentences
            ]
        out = train_tagger(
            sents,
            folder / "model",
            tc,
            labels=CONLL_LABELS,
            init=None if init is None else init.folder / "model",
            word_weights=word_weights,
            progress=ctx.progress,
            compact=True,
        )
        meta = json.loads((out / "unitrans.json").read_text()) if (out / "unitrans.json").is_file() else {}
        return {"sentences": len(sents), "timings": meta.get("timings", {})}

    settings = {"kind": kind, "train": tc.results_key()}
    work = (data.words() + sum(c.words() for c in extra)) * epochs
    label = model_label(kind, seed, lang)
    return ctx.run("model", settings, inputs, build, label=label, seed=seed, resumable=True, work=work)


def model_label(kind: str, seed: int, lang: str | None = None) -> str:
    """Θsrc serves every language; the other models are one language's (several targets: say which)."""
    return f"{lang + ': ' if lang else ''}train {kind} (seed {seed})"


def translate_label(config: PipelineConfig, lang: str) -> str:
    return f"translate {config.source}→{lang}"


def call_label(call: Callable[..., Any], config: PipelineConfig) -> str:
    """The label a bound stage call (a `functools.partial`) will log, known before it runs: for messages
    about a stage that never reported back (its worker process died)."""
    if not isinstance(call, functools.partial):
        return getattr(call, "__name__", "a stage")
    kw = call.keywords
    if "label" in kw:
        return str(kw["label"])
    if call.func is train_model:
        return model_label(kw["kind"], kw["seed"], kw.get("lang"))
    if call.func is translate:
        return translate_label(config, kw["lang"])
    return getattr(call.func, "__name__", "a stage")


def translate(ctx: StageContext, source: Corpus, target_text: Corpus, lang: str) -> StageRecord:
    """D_trans: the source train set word-by-word translated into `lang`, labels copied."""
    from unitrans.pipeline import translation

    dictionary = translation.user_dictionary(ctx.config)  # read once: the key's SHA-256 is what is used
    settings = translation.settings(
        ctx.config, source.sentences, target_text.sentences, dictionary=dictionary
    )

    def build(folder: Path) -> dict[str, Any]:
        return translation.run_translation(
            source.sentences,
            target_text.sentences,
            ctx.config,
            out_file=folder / "dtrans.txt",
            lexicon_file=folder / "lexicon.tsv",
            cache_dir=ctx.cache.root / "embeddings",
            progress=ctx.progress,
            dictionary=dictionary,
        )

    inputs = {"source": source.key, "target_text": target_text.key}
    work = source.words() + target_text.words()
    return ctx.run("translate", settings, inputs, build, label=translate_label(ctx.config, lang), work=work)


def dtrans_corpus(rec: StageRecord, lang: str) -> Corpus:
    sents = read_conll(rec.folder / "dtrans.txt")
    return Corpus(f"D_trans ({lang})", sents, rec.key)


class CachedStates:
    """The run's store of bottom-layer states (`unitrans.model.shared_states`): entries in the stage
    cache under `bottom-states/`, verified on reuse like every stage, built once when two workers need
    one at the same time (the second waits on the entry's lock). Not a stage of the graph: a cache of
    part of the probabilities stages' work, which give the same bits with or without it."""

    def __init__(self, cache: StageCache, label: str) -> None:
        self.cache = cache
        self.label = label

    def get(self, key: str, batches: int, compute: Callable[[], list[torch.Tensor]]) -> list[torch.Tensor]:
        made: list[torch.Tensor] = []

        def build(folder: Path) -> dict[str, Any]:
            made.extend(compute())
            save_states(folder / STATES_FILE, made)
            return {"batches": len(made)}

        rec = self.cache.run("bottom-states", {"key": key}, {}, build, label=self.label)
        return made if made else load_states(rec.folder / STATES_FILE, batches)


def probabilities(ctx: StageContext, model: StageRecord, data: Corpus, *, label: str) -> StageRecord:
    """Per-word label probabilities of a model on a corpus (probs.npz); the bottom layers' output on the
    corpus is shared with the run's other models (`CachedStates`)."""

    def build(folder: Path) -> dict[str, Any]:
        states = CachedStates(ctx.cache, f"bottom states of {data.name}") if ctx.config.share_states else None
        probs = predict_probs(model.folder / "model", data.sentences, progress=ctx.progress, states=states)
        save_probs(folder / "probs.npz", probs, model_labels(model.folder / "model"))
        return {"sentences": len(probs)}

    inputs = {"model": model.key, "data": data.key}
    return ctx.run("probs", {}, inputs, build, label=label, work=data.words())


def read_probs(rec: StageRecord) -> list[np.ndarray]:
    probs, labels = load_probs(rec.folder / "probs.npz")
    if list(labels) != list(CONLL_LABELS):
        raise UnitransError(f"{rec.folder}: labels {labels} differ from {list(CONLL_LABELS)}")
    return probs


def evaluate(ctx: StageContext, probs: StageRecord, test: Corpus, *, label: str) -> StageRecord:
    """Constrained Viterbi over the test probabilities, then conlleval entity scores against gold."""

    def build(folder: Path) -> dict[str, Any]:
        p = read_probs(probs)
        tags = decode_tags(p, CONLL_LABELS)
        gold = [list(s.tags or ()) for s in test.sentences]
        scores = entity_scores(gold, tags)
        write_conll(folder / "predictions.txt", test.sentences, tags, keep_gold=True)
        o = scores.overall
        return {"f1": o.f1, "precision": o.precision, "recall": o.recall, "scores": scores.to_dict()}

    return ctx.run(
        "evaluate",
        {"decoder": "constrained-viterbi", "metric": "conlleval"},
        {"probs": probs.key, "test": test.key},
        build,
        label=label,
    )


def read_predictions(rec: StageRecord) -> list[list[str]]:
    """The predicted tags an evaluation wrote (last column of predictions.txt)."""
    sents = read_conll(rec.folder / "predictions.txt", tag_column=-1)
    return [list(s.tags or ()) for s in sents]
