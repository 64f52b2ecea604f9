"""Every stage of a run, listed before anything runs: as a graph for the pool, and as the ETA's plan.

With several workers (or `executor=ray`), `stage_graph` declares every stage with the stages it needs and
`StagePool.run_graph` starts each as soon as those are done; the ordered loop in `runner.run_pipeline`
then finds all of them in the memo and builds the report. `planned_stages` walks that same ordered loop
on a planning context, building nothing, so the ETA (`eta.RunProgress`) knows every stage up front.
"""

from __future__ import annotations

import functools
from dataclasses import replace

from unitrans.pipeline.cache import StageRecord
from unitrans.pipeline.config import PipelineConfig
from unitrans.pipeline.eta import PlannedStage
from unitrans.pipeline.language import LanguageStages
from unitrans.pipeline.parallel import GraphTask, StageCall, lone_threads, on_cpu
from unitrans.pipeline.stages import Corpus, StageContext
from unitrans.pipeline.variants import VARIANTS, report_rows


def _model_ident(lang: str, kind: str, seed: int) -> tuple:
    return ("src", seed) if kind == "src" else (lang, kind, seed)  # Θsrc serves every language


def _student_ident(lang: str, name: str, seed: int, round_: int, *, on_text: bool = False) -> tuple:
    """A student's task in the graph (round 1's is UniTrans's), or that of its probabilities on D_T."""
    if on_text:
        return ("dt-student", lang, name, seed, round_)
    return ("student", lang, name, seed) + ((round_,) if round_ > 1 else ())


def stage_graph(languages: dict[str, LanguageStages], config: PipelineConfig) -> list[GraphTask]:
    """Every stage of the run with the stages it needs, for `StagePool.run_graph`; the ordered loop in
    `run_pipeline` then finds them all in the memo. Listed in the order the loop would reach them, which
    is also the order in which ready stages start."""
    plan = [
        (lg, seed, name) for lg in languages.values() for seed in config.seed_list for name in config.variants
    ]
    models: set[tuple[str, str, int]] = set()
    init = config.student_init  # a student may start from a teacher of its seed
    student_threads = lone_threads(config.student_threads) if on_cpu() else 0  # > 0: runs alone
    flexible = config.student_threads == "split"  # its parts give the same bits in turn: may take a slot
    for lg, seed, name in plan:
        v = VARIANTS[name]
        kinds = [(k, s) for k in v.models() for s in lg.member_seeds(seed, v.ensemble)]
        if v.is_student and init != "pretrained":
            kinds.append((init, seed))
        for kind, s in kinds:
            models.update({(lg.lang, kind, s)} | ({(lg.lang, "src", s)} if kind == "teach" else set()))
    if config.denoise != "none":  # Θtrans's D_trans weights come from Θsrc of the same seed
        models.update((lang, "src", s) for lang, kind, s in list(models) if kind == "trans")
    first = next(iter(languages.values()))

    def translation(lg: LanguageStages) -> tuple:
        return lg.translation_call(), lg.adopt_translation

    def model(lg: LanguageStages, kind: str, s: int) -> tuple:
        return lg.model_call(kind, s), functools.partial(lg.adopt_model, kind, s)

    srcs = sorted({s for _, kind, s in models if kind == "src"})
    tasks = [GraphTask(("src", s), (), functools.partial(model, first, "src", s), heavy=True) for s in srcs]
    if any(kind != "src" for _, kind, _ in models):
        tasks += [
            GraphTask(("translate", lg.lang), (), functools.partial(translation, lg), heavy=True)
            for lg in languages.values()
        ]
    for lang, kind, s in sorted(models):
        if kind != "src":
            src_first = kind == "teach" or (kind == "trans" and config.denoise != "none")  # D_trans weights
            needs = (("translate", lang),) + ((("src", s),) if src_first else ())
            make = functools.partial(model, languages[lang], kind, s)
            tasks.append(GraphTask((lang, kind, s), needs, make, heavy=True))

    def adopted(lg: LanguageStages, key: tuple, call: StageCall) -> tuple:
        return call, functools.partial(lg.adopt, key)

    def probs(lg: LanguageStages, rec: StageRecord, data: Corpus, label: str) -> tuple:
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
            if init != "pretrained":
                needs += (_model_ident(lg.lang, init, seed),)
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
                threads=student_threads, flexible=flexible, heavy=True,
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


def planned_stages(ctx: StageContext, languages: dict[str, LanguageStages]) -> list[PlannedStage]:
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
