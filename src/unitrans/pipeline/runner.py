"""`unitrans run`: every selected variant, for every target language and seed, through the stage cache.

Order per target: translation (D_trans) → models per seed (Θsrc, Θtrans, Θteach, data combination) →
teacher probabilities on D_T → votes → students → test probabilities → evaluation; then the report.
Θsrc's key does not involve the target, so one Θsrc per seed serves every target language. With
several workers, `_graph` declares every stage with the stages it needs and the pool starts each as soon
as they are done; the ordered loop then finds all of them in the memo and builds the report.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from unitrans.atomic import check_writable_dir, write_text_atomic
from unitrans.eval.report import build_results, render_markdown, write_report
from unitrans.pipeline import denoising, stages, translation
from unitrans.pipeline.cache import StageCache, StageRecord
from unitrans.pipeline.config import PipelineConfig
from unitrans.pipeline.eta import PlannedStage, RunProgress
from unitrans.pipeline.export import export_run
from unitrans.pipeline.parallel import GraphTask, StageCall, StagePool, resolve_workers
from unitrans.pipeline.stages import Corpus, StageContext
from unitrans.pipeline.variants import (
    TEACHERS,
    VARIANTS,
    paper_variant,
    report_rows,
    required_models,
    row_title,
)
from unitrans.train.selftrain import RoundTeachers, round_teachers

logger = logging.getLogger(__name__)

ENSEMBLE_SEED_STRIDE = 1000
"""Ensemble member j of run seed s trains with seed s + 1000·j (member 0 is the run's own model)."""


@dataclass(frozen=True)
class RunResult:
    """What a run produced: summaries, the per-seed details, and every stage's record."""

    results: dict[str, dict[str, dict[str, Any]]]
    runs: dict[str, dict[str, list[dict[str, Any]]]]
    coverage: dict[str, list[float]]
    records: list[StageRecord]
    paths: dict[str, Path]
    markdown: str
    exports: dict[str, dict[str, Path]]
    """{target: {variant: exported model folder}} (see `pipeline.export`)."""
    diagnostics: dict[str, dict[str, list[dict[str, Any]]]]
    """{target: {student variant: [{seed, rounds: [{round, voting_coverage, entity_share, ...}]}]}}:
    label-free signals per self-training round (also in diagnostics.json)."""


ENTITY_SHARE_RATIO = 1.5
"""A teacher tagging this many times more target words as entities than another gets a warning."""


def _warn_if_teachers_disagree(label: str, shares: dict[str, float]) -> None:
    low, high = min(shares, key=shares.__getitem__), max(shares, key=shares.__getitem__)
    if shares[low] > 0 and shares[high] / shares[low] >= ENTITY_SHARE_RATIO:
        logger.warning(
            "%s: Θ%s tags %.1f%% of the unlabelled target words as entities, Θ%s %.1f%%; the translated "
            "training data may not look like target text (its casing, for one: see --set casing)",
            label, high, 100 * shares[high], low, 100 * shares[low],
        )  # fmt: skip


class _Language:
    """The stages of one target language, memoized so shared inputs run (and are logged) once."""

    def __init__(self, ctx: StageContext, source: Corpus, lang: str, models: dict) -> None:
        self.ctx, self.source, self.lang = ctx, source, lang
        self.text = stages.read_target_text(ctx.config, lang)
        self.test = stages.read_target_test(ctx.config, lang)
        self._models = models  # shared across languages: Θsrc is keyed without the target
        self._dtrans: Corpus | None = None
        self._memo: dict[tuple, StageRecord] = {}
        self._shares: dict[str, float] = {}

    def translation_call(self) -> StageCall:
        return functools.partial(stages.translate, source=self.source, target_text=self.text, lang=self.lang)

    def adopt_translation(self, rec: StageRecord) -> None:
        if self.ctx.plan is not None and not rec.cached:  # planned, not built: word by word, same lengths
            self._dtrans = Corpus(f"D_trans ({self.lang})", self.source.sentences, rec.key)
            return
        self._dtrans = stages.dtrans_corpus(rec, self.lang)

    def planning(self, ctx: StageContext, models: dict) -> _Language:
        """This language on a planning context with empty memos (see `_plan`); the run's memos stay as
        they were."""
        twin = copy.copy(self)
        twin.ctx, twin._models, twin._dtrans, twin._memo = ctx, models, None, {}
        return twin

    def dtrans(self) -> Corpus:
        if self._dtrans is None:
            self.adopt_translation(self.translation_call()(self.ctx))
        return self._dtrans  # type: ignore[return-value]

    def _model_key(self, kind: str, seed: int) -> tuple:
        return (kind, seed) if kind == "src" else (kind, seed, self.lang)

    def has_model(self, kind: str, seed: int) -> bool:
        return self._model_key(kind, seed) in self._models

    def model_call(self, kind: str, seed: int) -> StageCall:
        """Training of one model with its inputs bound (Θteach's Θsrc and D_trans are resolved first)."""
        cfg = self.ctx.config
        lr, epochs = cfg.teacher_lr, cfg.epochs
        train = functools.partial(stages.train_model, seed=seed, lr=lr)
        if kind == "src":
            return functools.partial(train, kind="src", data=self.source, epochs=epochs)
        if kind == "trans":
            weights = self.trans_weights(seed)
            return functools.partial(train, kind="trans", data=self.dtrans(), epochs=epochs, weights=weights)
        if kind == "teach":
            init = self.model("src", seed)
            return functools.partial(
                train, kind="teach", data=self.dtrans(), epochs=cfg.teach_epochs, init=init,
                weights=self.trans_weights(seed),
            )  # fmt: skip
        if kind == "combo":
            return functools.partial(
                train, kind="combo", data=self.source, epochs=epochs, extra=[self.dtrans()]
            )
        raise ValueError(f"unknown model kind {kind!r}")

    def trans_weights(self, seed: int) -> StageRecord | None:
        """`--set denoise=neighbours`: D_trans word weights from Θsrc of this seed (else None)."""
        if self.ctx.config.denoise == "none":
            return None
        src, dtrans = self.model("src", seed), self.dtrans()
        label = f"{self.lang}: D_trans neighbour weights (seed {seed})"
        return self._once(
            ("trans-weights", seed), lambda: denoising.trans_weights(self.ctx, src, dtrans, label=label)
        )

    def denoised(
        self, name: str, seed: int, soft: StageRecord | None, hard: StageRecord | None, round_: int = 1
    ) -> tuple[StageRecord | None, StageRecord | None]:
        """A student's (soft, hard) targets, denoised by neighbours when `denoise` asks for it."""
        rec = self.denoise_record(name, seed, soft, hard, round_)
        if rec is None:
            return soft, hard
        return (rec if soft is not None else None), (rec if hard is not None else None)

    def denoise_record(
        self, name: str, seed: int, soft: StageRecord | None, hard: StageRecord | None, round_: int = 1
    ) -> StageRecord | None:
        """The denoise stage of a student's round: the round's soft targets and votes (from round 2 with
        the previous student in them), neighbours in the soft teacher's space in every round."""
        v = VARIANTS[name]
        if self.ctx.config.denoise == "none" or not v.is_student:
            return None
        kind = v.soft_teacher or "teach"  # no-soft: the votes are Θteach's argmax where all agree
        teacher = soft if soft is not None else self.teacher(kind, seed, v.ensemble)
        model = self.model(kind, self.member_seeds(seed, v.ensemble)[0])
        if round_ == 1:
            key: tuple = ("denoise", kind, seed, v.ensemble, hard is not None)
            label = f"{self.lang}: denoise {kind}{' (ensemble)' if v.ensemble else ''} targets (seed {seed})"
        else:
            key = ("denoise", name, seed, round_)
            label = f"{self.lang}: denoise targets of {name} round {round_} (seed {seed})"
        return self._once(
            key, lambda: denoising.targets(self.ctx, model, teacher, hard, self.text, label=label)
        )

    def denoise_metrics(self, name: str, seed: int, round_: int = 1) -> dict[str, float] | None:
        """Label-free diagnostics of a denoised student (neighbour agreement on D_T and D_trans)."""
        v = VARIANTS[name]
        if self.ctx.config.denoise == "none" or not v.is_student:
            return None
        hard = self.votes(name, seed, round_)
        soft = self.soft_targets(name, seed, round_)
        rec = self.denoise_record(name, seed, soft, hard, round_)
        out = {"dt_agreement": float(rec.metrics["agreement"])} if rec is not None else {}
        if rec is not None and "coverage" in rec.metrics:
            out["dt_coverage_kept"] = float(rec.metrics["coverage"])
        weights = self.trans_weights(seed)
        if weights is not None and any(k in ("trans", "teach") for k in v.models()):
            out["dtrans_agreement"] = float(weights.metrics["agreement"])
            out["dtrans_mean_weight"] = float(weights.metrics["mean_weight"])
        return out

    def adopt_model(self, kind: str, seed: int, rec: StageRecord) -> None:
        self._models[self._model_key(kind, seed)] = rec

    def model(self, kind: str, seed: int) -> StageRecord:
        if not self.has_model(kind, seed):
            self.adopt_model(kind, seed, self.model_call(kind, seed)(self.ctx))
        return self._models[self._model_key(kind, seed)]

    def _once(self, key: tuple, make: Callable[[], StageRecord]) -> StageRecord:
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def probs_call(self, model: StageRecord, data: Corpus, label: str) -> tuple[tuple, StageCall]:
        call = functools.partial(stages.probabilities, model=model, data=data, label=label)
        return ("probs", model.key, data.key), call

    def probs(self, model: StageRecord, data: Corpus, label: str) -> StageRecord:
        key, call = self.probs_call(model, data, label)
        return self._once(key, lambda: call(self.ctx))

    def adopt(self, key: tuple, rec: StageRecord) -> None:
        self._memo.setdefault(key, rec)

    def member_seeds(self, seed: int, ensemble: bool) -> list[int]:
        members = self.ctx.config.ensemble if ensemble else 1
        return [seed + ENSEMBLE_SEED_STRIDE * j for j in range(members)]

    def teacher(self, kind: str, seed: int, ensemble: bool) -> StageRecord:
        """Teacher probabilities on D_T: one run, or the mean of M runs (Eq. 14)."""
        seeds = self.member_seeds(seed, ensemble)
        runs = [self.probs(self.model(kind, s), self.text, self.dt_label(kind, s)) for s in seeds]
        label = f"{self.lang}: {kind} ensemble of {len(seeds)} (seed {seed}) on D_T"
        return self._once(
            ("avg", kind, seed, len(seeds)), lambda: stages.averaged(self.ctx, runs, label=label)
        )

    def dt_label(self, kind: str, seed: int) -> str:
        return f"{self.lang}: {kind} (seed {seed}) on D_T"

    def teachers(self, name: str, seed: int, round_: int) -> RoundTeachers[StageRecord]:
        """The teachers of a student variant's round, as probabilities on D_T (`train.selftrain`)."""
        v = VARIANTS[name]
        soft = (v.soft_teacher, self.teacher(v.soft_teacher, seed, v.ensemble)) if v.soft_teacher else None
        voters = [(k, self.teacher(k, seed, v.ensemble)) for k in TEACHERS] if v.hard else []
        previous = self.student_on_text(name, seed, round_ - 1) if round_ > 1 else None
        return round_teachers(soft, voters, previous)

    def votes(self, name: str, seed: int, round_: int = 1) -> StageRecord | None:
        """The round's hard labels (None for a variant without them); round 1's are UniTrans's, shared
        by every variant with the same teachers."""
        v = VARIANTS[name]
        if not v.hard:
            return None
        voters = self.teachers(name, seed, round_).voters
        if round_ == 1:
            key: tuple = ("votes", seed, v.ensemble)
            label = f"{self.lang}: votes{' (ensemble)' if v.ensemble else ''} (seed {seed})"
        else:
            key = ("votes", seed, v.ensemble, name, round_)
            label = f"{self.lang}: votes of {name} round {round_} (seed {seed})"
        return self._once(key, lambda: stages.votes(self.ctx, voters, label=label))

    def soft_targets(self, name: str, seed: int, round_: int = 1) -> StageRecord | None:
        """The round's soft targets: the soft teacher's probabilities, averaged with the previous
        student's from round 2 on (None for a variant without a soft loss)."""
        soft = list(self.teachers(name, seed, round_).soft.values())
        if len(soft) <= 1:
            return soft[0] if soft else None
        label = f"{self.lang}: soft targets of {name} round {round_} (seed {seed})"
        return self._once(("soft", name, seed, round_), lambda: stages.averaged(self.ctx, soft, label=label))

    def entity_shares(self, teachers: dict[str, StageRecord]) -> dict[str, float]:
        """Each teacher's share of D_T words tagged as entities (read from the cached probabilities)."""
        for rec in teachers.values():
            if rec.key not in self._shares:
                self._shares[rec.key] = stages.entity_share(rec)
        return {k: self._shares[rec.key] for k, rec in teachers.items()}

    def diagnostics(self, name: str, seed: int, round_: int) -> dict[str, Any]:
        """Label-free signals of a student's round: voting coverage and each teacher's entity share."""
        t = self.teachers(name, seed, round_)
        hard = self.votes(name, seed, round_)
        entry: dict[str, Any] = {
            "round": round_,
            "voting_coverage": None if hard is None else float(hard.metrics["coverage"]),
            "entity_share": self.entity_shares({**t.voters, **t.soft}),
        }
        denoised = self.denoise_metrics(name, seed, round_)
        if denoised and "dt_agreement" in denoised:  # further signals: each a column of the report
            entry["neighbour_agreement"] = denoised["dt_agreement"]
            if "dt_coverage_kept" in denoised:
                entry["hard_labels_kept"] = denoised["dt_coverage_kept"]
        return entry

    def student_label(self, name: str, seed: int, round_: int) -> str:
        within = "" if round_ == 1 else f" round {round_}"
        return f"{self.lang}: student {name}{within} (seed {seed})"

    def student_call(self, name: str, seed: int, round_: int = 1) -> tuple[tuple, StageCall]:
        """A student's distillation with its teachers' outputs resolved (they run first)."""
        hard = self.votes(name, seed, round_)
        soft = self.soft_targets(name, seed, round_)
        soft, hard = self.denoised(name, seed, soft, hard, round_)
        label = self.student_label(name, seed, round_)
        call = functools.partial(
            stages.student, target_text=self.text, soft=soft, hard=hard, seed=seed, label=label
        )
        return ("student", name, seed, round_), call

    def student(self, name: str, seed: int, round_: int) -> StageRecord:
        key, call = self.student_call(name, seed, round_)
        return self._once(key, lambda: call(self.ctx))

    def student_on_text_call(self, name: str, seed: int, round_: int) -> tuple[tuple, StageCall]:
        """The probabilities of a round's student on D_T, with which it teaches the next round."""
        return self.probs_call(
            self.student(name, seed, round_), self.text, self.student_label(name, seed, round_) + " on D_T"
        )

    def student_on_text(self, name: str, seed: int, round_: int) -> StageRecord:
        key, call = self.student_on_text_call(name, seed, round_)
        return self._once(key, lambda: call(self.ctx))

    def variant_model(self, name: str, seed: int, round_: int = 1) -> StageRecord:
        v = VARIANTS[name]
        if v.model is not None:
            return self.model(v.model, seed)
        return self.student(name, seed, round_)

    def test_label(self, row: str, seed: int) -> str:
        return f"{self.lang}: {row} (seed {seed}) on test"

    def variant(
        self, row: str, name: str, seed: int, round_: int = 1
    ) -> tuple[StageRecord, StageRecord, StageRecord | None]:
        """(model or student record, evaluation record, votes record or None) of one report row and seed."""
        model = self.variant_model(name, seed, round_)
        hard = self.votes(name, seed, round_) if VARIANTS[name].is_student else None
        test_probs = self.probs(model, self.test, self.test_label(row, seed))
        ev = self._once(
            ("eval", test_probs.key),
            lambda: stages.evaluate(
                self.ctx, test_probs, self.test, label=f"{self.lang}: evaluate {row} (seed {seed})"
            ),
        )
        return model, ev, hard


def _model_ident(lang: str, kind: str, seed: int) -> tuple:
    return ("src", seed) if kind == "src" else (lang, kind, seed)  # Θsrc serves every language


def _student_ident(lang: str, name: str, seed: int, round_: int, *, on_text: bool = False) -> tuple:
    """A student's task in the graph (round 1's is UniTrans's), or that of its probabilities on D_T."""
    if on_text:
        return ("dt-student", lang, name, seed, round_)
    return ("student", lang, name, seed) + ((round_,) if round_ > 1 else ())


def _graph(languages: dict[str, _Language], config: PipelineConfig) -> list[GraphTask]:
    """Every stage of the run with the stages it needs, for `StagePool.run_graph`; the ordered loop in
    `run_pipeline` then finds them all in the memo. Listed in the order the loop would reach them, which
    is also the order in which ready stages start."""
    plan = [
        (lg, seed, name) for lg in languages.values() for seed in config.seed_list for name in config.variants
    ]
    models: set[tuple[str, str, int]] = set()
    for lg, seed, name in plan:
        v = VARIANTS[name]
        for kind in v.models():
            for s in lg.member_seeds(seed, v.ensemble):
                models.update({(lg.lang, kind, s)} | ({(lg.lang, "src", s)} if kind == "teach" else set()))
    if config.denoise != "none":  # Θtrans's D_trans weights come from Θsrc of the same seed
        models.update((lang, "src", s) for lang, kind, s in list(models) if kind == "trans")
    first = next(iter(languages.values()))

    def model(lg: _Language, kind: str, s: int) -> tuple:
        return lg.model_call(kind, s), functools.partial(lg.adopt_model, kind, s)

    srcs = sorted({s for _, kind, s in models if kind == "src"})
    tasks = [GraphTask(("src", s), (), functools.partial(model, first, "src", s)) for s in srcs]
    if any(kind != "src" for _, kind, _ in models):
        tasks += [
            GraphTask(("translate", lg.lang), (), lambda lg=lg: (lg.translation_call(), lg.adopt_translation))
            for lg in languages.values()
        ]
    for lang, kind, s in sorted(models):
        if kind != "src":
            src_first = kind == "teach" or (kind == "trans" and config.denoise != "none")  # D_trans weights
            needs = (("translate", lang),) + ((("src", s),) if src_first else ())
            make = functools.partial(model, languages[lang], kind, s)
            tasks.append(GraphTask((lang, kind, s), needs, make))

    def adopted(lg: _Language, key: tuple, call: StageCall) -> tuple:
        return call, functools.partial(lg.adopt, key)

    def probs(lg: _Language, rec: StageRecord, data: Corpus, label: str) -> tuple:
        return adopted(lg, *lg.probs_call(rec, data, label))

    for lg, seed, name in plan:
        v = VARIANTS[name]
        for kind in v.models() if v.is_student else ():
            for s in lg.member_seeds(seed, v.ensemble):
                tasks.append(GraphTask(
                    ("dt", lg.lang, kind, s), (_model_ident(lg.lang, kind, s),),
                    lambda lg=lg, kind=kind, s=s: probs(lg, lg.model(kind, s), lg.text, lg.dt_label(kind, s)),
                ))  # fmt: skip
    students = [(lg, seed, name) for lg, seed, name in plan if VARIANTS[name].is_student]
    for round_ in range(1, config.rounds + 1):
        for lg, seed, name in students:
            v = VARIANTS[name]
            needs = tuple(
                ("dt", lg.lang, kind, s) for kind in v.models() for s in lg.member_seeds(seed, v.ensemble)
            )
            if round_ > 1:  # the previous round's student teaches this one
                needs += (_student_ident(lg.lang, name, seed, round_ - 1, on_text=True),)
                tasks.append(GraphTask(
                    _student_ident(lg.lang, name, seed, round_ - 1, on_text=True),
                    (_student_ident(lg.lang, name, seed, round_ - 1),),
                    lambda lg=lg, name=name, seed=seed, r=round_ - 1: adopted(
                        lg, *lg.student_on_text_call(name, seed, r)
                    ),
                ))  # fmt: skip
            tasks.append(GraphTask(
                _student_ident(lg.lang, name, seed, round_), needs,
                lambda lg=lg, name=name, seed=seed, r=round_: adopted(lg, *lg.student_call(name, seed, r)),
            ))  # fmt: skip
    for lg, seed, name in plan:
        v = VARIANTS[name]
        for row, _, round_ in report_rows((name,), config.rounds):
            need = (
                _model_ident(lg.lang, v.model, seed)
                if v.model
                else _student_ident(lg.lang, name, seed, round_)
            )
            tasks.append(GraphTask(
                ("test", lg.lang, row, seed), (need,),
                lambda lg=lg, row=row, name=name, seed=seed, r=round_: probs(
                    lg, lg.variant_model(name, seed, r), lg.test, lg.test_label(row, seed)
                ),
            ))  # fmt: skip
    return tasks


def _plan(ctx: StageContext, languages: dict[str, _Language]) -> list[PlannedStage]:
    """Every stage of the run, in the order the ordered loop reaches them (each after what it needs),
    cached or not: the loop below run on a planning context (`StageContext.plan`), nothing built."""
    planning = replace(ctx, plan=[], records=[], after_stage=None, eta=None)
    models: dict = {}
    for language in languages.values():
        twin = language.planning(planning, models)
        for seed in ctx.config.seed_list:
            for row, name, round_ in report_rows(ctx.config.variants, ctx.config.rounds):
                twin.variant(row, name, seed, round_)
    return planning.plan or []


def run_pipeline(
    config: PipelineConfig,
    *,
    progress: bool = True,
    after_stage: Callable[[StageRecord], None] | None = None,
) -> RunResult:
    """Run (or resume) the configured variants and write the report into `config.out_dir`.

    The output and cache folders are checked first: an unwritable one fails in a second, not after the
    first hour of training.
    """
    check_writable_dir(config.out_dir, "output folder (--out)")
    check_writable_dir(config.cache_root, "cache folder (--cache-dir)")
    cache = StageCache(config.cache_root, verify=config.verify)
    config.write(config.out_dir / "config.json")
    ctx = StageContext(cache, config, progress, after_stage=after_stage)
    source = stages.read_source(config)
    languages = {}
    shared_models: dict = {}
    for lang in config.targets:  # read every input first: a missing file fails before any training
        languages[lang] = _Language(ctx, source, lang, shared_models)
    dictionary = translation.user_dictionary(config)  # a malformed dictionary too
    logger.info("models needed: %s", ", ".join(required_models(config.variants)))
    workers = resolve_workers(config.workers)
    ctx.eta = RunProgress(_plan(ctx, languages), workers)
    logger.info("%s", ctx.eta.start_line())
    if workers > 1 or config.executor != "local":
        with StagePool(ctx, workers, config.executor, on_start=ctx.announce) as pool:
            pool.run_graph(_graph(languages, config))

    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    coverage: dict[str, list[float]] = {}
    teacher_shares: dict[str, list[dict[str, float]]] = {}
    agreement: dict[str, list[dict[str, float]]] = {}
    diagnostics: dict[str, dict[str, list[dict[str, Any]]]] = {}
    rows = report_rows(config.variants, config.rounds)
    for lang, language in languages.items():
        runs[lang] = {row: [] for row, _, _ in rows}
        for seed in config.seed_list:
            for row, name, round_ in rows:
                model, ev, hard = language.variant(row, name, seed, round_)
                m = ev.metrics
                runs[lang][row].append(
                    {
                        "seed": seed,
                        "f1": m["f1"],
                        "precision": m["precision"],
                        "recall": m["recall"],
                        "model": str(model.folder / "model"),
                        "predictions": str(ev.folder / "predictions.txt"),
                    }
                )
                denoised = language.denoise_metrics(name, seed, round_)
                if denoised is not None:  # absent without denoise: runs.json as before
                    runs[lang][row][-1]["denoise"] = denoised
                    agreement.setdefault(f"{lang} {row}", []).append(denoised)
                if VARIANTS[name].is_student:
                    per_seed = diagnostics.setdefault(lang, {}).setdefault(name, [])
                    if round_ == 1:
                        per_seed.append({"seed": seed, "rounds": []})
                    per_seed[-1]["rounds"].append(language.diagnostics(name, seed, round_))
                if hard is not None and round_ == 1:
                    label = lang if not VARIANTS[name].ensemble else f"{lang} (ensemble)"
                    values = coverage.setdefault(label, [])
                    if len(values) < config.seed_list.index(seed) + 1:
                        values.append(float(hard.metrics["coverage"]))
                        shares = language.entity_shares(language.teachers(name, seed, 1).voters)
                        teacher_shares.setdefault(label, []).append(shares)
                        _warn_if_teachers_disagree(label, shares)

    scores = {
        t: {v: [{k: r[k] for k in ("seed", "f1", "precision", "recall")} for r in rs] for v, rs in by.items()}
        for t, by in runs.items()
    }
    results = build_results(scores)
    report_args = {
        "encoder": config.encoder,
        "titles": {
            **{name: v.title for name, v in VARIANTS.items()},
            **{row: row_title(row, name, r, config.rounds) for row, name, r in rows},
        },
        "paper_rows": {row: paper_variant(name, r) for row, name, r in rows},
        "diagnostics": diagnostics,
        "coverage": coverage,
        "entity_shares": teacher_shares,
        "timings": [{"label": r.label, "cached": r.cached, "seconds": r.seconds} for r in ctx.records],
        "seeds": config.seeds,
        "setting": translation.report_setting(dictionary),
        **({"agreement": agreement} if agreement else {}),
    }
    paths = write_report(config.out_dir, results, **report_args)
    runs_path = config.out_dir / "runs.json"
    write_text_atomic(runs_path, json.dumps(runs, indent=2) + "\n")
    paths["runs"] = runs_path
    diagnostics_path = config.out_dir / "diagnostics.json"
    write_text_atomic(diagnostics_path, json.dumps(diagnostics, indent=2) + "\n")
    paths["diagnostics"] = diagnostics_path
    exports = export_run(config, runs, results)
    markdown = render_markdown(results, **report_args)
    return RunResult(results, runs, coverage, list(ctx.records), paths, markdown, exports, diagnostics)


def summary_lines(result: RunResult) -> list[str]:
    """One line per stage for the console: what ran, what came from the cache."""
    ran = [r for r in result.records if not r.cached]
    n = len(result.records)
    return [f"{n} stages: {len(ran)} ran, {n - len(ran)} cached (skipped)"]
