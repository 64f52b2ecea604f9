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
from unitrans.pipeline.variants import TEACHERS, VARIANTS, required_models

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
        self, name: str, seed: int, soft: StageRecord | None, hard: StageRecord | None
    ) -> tuple[StageRecord | None, StageRecord | None]:
        """A student's (soft, hard) targets, denoised by neighbours when `denoise` asks for it."""
        rec = self.denoise_record(name, seed, soft, hard)
        if rec is None:
            return soft, hard
        return (rec if soft is not None else None), (rec if hard is not None else None)

    def denoise_record(
        self, name: str, seed: int, soft: StageRecord | None, hard: StageRecord | None
    ) -> StageRecord | None:
        v = VARIANTS[name]
        if self.ctx.config.denoise == "none" or not v.is_student:
            return None
        kind = v.soft_teacher or "teach"  # no-soft: the votes are Θteach's argmax where all agree
        teacher = soft if soft is not None else self.teacher(kind, seed, v.ensemble)
        model = self.model(kind, self.member_seeds(seed, v.ensemble)[0])
        label = f"{self.lang}: denoise {kind}{' (ensemble)' if v.ensemble else ''} targets (seed {seed})"
        return self._once(
            ("denoise", kind, seed, v.ensemble, hard is not None),
            lambda: denoising.targets(self.ctx, model, teacher, hard, self.text, label=label),
        )

    def denoise_metrics(self, name: str, seed: int) -> dict[str, float] | None:
        """Label-free diagnostics of a denoised student (neighbour agreement on D_T and D_trans)."""
        v = VARIANTS[name]
        if self.ctx.config.denoise == "none" or not v.is_student:
            return None
        hard = self.votes(seed, v.ensemble) if v.hard else None
        soft = self.teacher(v.soft_teacher, seed, v.ensemble) if v.soft_teacher else None
        rec = self.denoise_record(name, seed, soft, hard)
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

    def votes(self, seed: int, ensemble: bool) -> StageRecord:
        t = {k: self.teacher(k, seed, ensemble) for k in TEACHERS}
        label = f"{self.lang}: votes{' (ensemble)' if ensemble else ''} (seed {seed})"
        return self._once(
            ("votes", seed, ensemble),
            lambda: stages.votes(self.ctx, t["src"], t["teach"], t["trans"], label=label),
        )

    def entity_shares(self, seed: int, ensemble: bool) -> dict[str, float]:
        """Each teacher's share of D_T words tagged as entities (read from the cached probabilities)."""
        return {k: stages.entity_share(self.teacher(k, seed, ensemble)) for k in TEACHERS}

    def student_call(self, name: str, seed: int) -> tuple[tuple, StageCall]:
        """A student's distillation with its teachers' outputs resolved (they run first)."""
        v = VARIANTS[name]
        hard = self.votes(seed, v.ensemble) if v.hard else None
        soft = self.teacher(v.soft_teacher, seed, v.ensemble) if v.soft_teacher else None
        soft, hard = self.denoised(name, seed, soft, hard)
        label = f"{self.lang}: student {name} (seed {seed})"
        call = functools.partial(
            stages.student, target_text=self.text, soft=soft, hard=hard, seed=seed, label=label
        )
        return ("student", name, seed), call

    def variant_model(self, name: str, seed: int) -> StageRecord:
        v = VARIANTS[name]
        if v.model is not None:
            return self.model(v.model, seed)
        key, call = self.student_call(name, seed)
        return self._once(key, lambda: call(self.ctx))

    def test_label(self, name: str, seed: int) -> str:
        return f"{self.lang}: {name} (seed {seed}) on test"

    def variant(self, name: str, seed: int) -> tuple[StageRecord, StageRecord, StageRecord | None]:
        """(model or student record, evaluation record, votes record or None) of one variant and seed."""
        v = VARIANTS[name]
        model = self.variant_model(name, seed)
        hard = self.votes(seed, v.ensemble) if v.is_student and v.hard else None
        test_probs = self.probs(model, self.test, self.test_label(name, seed))
        ev = self._once(
            ("eval", test_probs.key),
            lambda: stages.evaluate(
                self.ctx, test_probs, self.test, label=f"{self.lang}: evaluate {name} (seed {seed})"
            ),
        )
        return model, ev, hard


def _model_ident(lang: str, kind: str, seed: int) -> tuple:
    return ("src", seed) if kind == "src" else (lang, kind, seed)  # Θsrc serves every language


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

    def probs(lg: _Language, rec: StageRecord, data: Corpus, label: str) -> tuple:
        key, call = lg.probs_call(rec, data, label)
        return call, functools.partial(lg.adopt, key)

    for lg, seed, name in plan:
        v = VARIANTS[name]
        for kind in v.models() if v.is_student else ():
            for s in lg.member_seeds(seed, v.ensemble):
                tasks.append(GraphTask(
                    ("dt", lg.lang, kind, s), (_model_ident(lg.lang, kind, s),),
                    lambda lg=lg, kind=kind, s=s: probs(lg, lg.model(kind, s), lg.text, lg.dt_label(kind, s)),
                ))  # fmt: skip
    for lg, seed, name in plan:
        v = VARIANTS[name]
        if v.is_student:
            needs = tuple(
                ("dt", lg.lang, kind, s) for kind in v.models() for s in lg.member_seeds(seed, v.ensemble)
            )

            def student(lg: _Language = lg, name: str = name, seed: int = seed) -> tuple:
                key, call = lg.student_call(name, seed)
                return call, functools.partial(lg.adopt, key)

            tasks.append(GraphTask(("student", lg.lang, name, seed), needs, student))
    for lg, seed, name in plan:
        v = VARIANTS[name]
        need = _model_ident(lg.lang, v.model, seed) if v.model else ("student", lg.lang, name, seed)
        tasks.append(GraphTask(
            ("test", lg.lang, name, seed), (need,),
            lambda lg=lg, name=name, seed=seed: probs(
                lg, lg.variant_model(name, seed), lg.test, lg.test_label(name, seed)
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
            for name in ctx.config.variants:
                twin.variant(name, seed)
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
    for lang, language in languages.items():
        runs[lang] = {name: [] for name in config.variants}
        for seed in config.seed_list:
            for name in config.variants:
                model, ev, hard = language.variant(name, seed)
                m = ev.metrics
                runs[lang][name].append(
                    {
                        "seed": seed,
                        "f1": m["f1"],
                        "precision": m["precision"],
                        "recall": m["recall"],
                        "model": str(model.folder / "model"),
                        "predictions": str(ev.folder / "predictions.txt"),
                    }
                )
                diagnostics = language.denoise_metrics(name, seed)
                if diagnostics is not None:  # absent without denoise: runs.json as before
                    runs[lang][name][-1]["denoise"] = diagnostics
                    agreement.setdefault(f"{lang} {name}", []).append(diagnostics)
                if hard is not None:
                    label = lang if not VARIANTS[name].ensemble else f"{lang} (ensemble)"
                    values = coverage.setdefault(label, [])
                    if len(values) < config.seed_list.index(seed) + 1:
                        values.append(float(hard.metrics["coverage"]))
                        shares = language.entity_shares(seed, VARIANTS[name].ensemble)
                        teacher_shares.setdefault(label, []).append(shares)
                        _warn_if_teachers_disagree(label, shares)

    scores = {
        t: {v: [{k: r[k] for k in ("seed", "f1", "precision", "recall")} for r in rs] for v, rs in by.items()}
        for t, by in runs.items()
    }
    results = build_results(scores)
    report_args = {
        "encoder": config.encoder,
        "titles": {name: v.title for name, v in VARIANTS.items()},
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
    exports = export_run(config, runs, results)
    markdown = render_markdown(results, **report_args)
    return RunResult(results, runs, coverage, list(ctx.records), paths, markdown, exports)


def summary_lines(result: RunResult) -> list[str]:
    """One line per stage for the console: what ran, what came from the cache."""
    ran = [r for r in result.records if not r.cached]
    n = len(result.records)
    return [f"{n} stages: {len(ran)} ran, {n - len(ran)} cached (skipped)"]
