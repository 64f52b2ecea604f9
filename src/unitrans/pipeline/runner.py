"""`unitrans run`: every selected variant, for every target language and seed, through the stage cache.

Every input is read and checked first, then each target's stages (`language.LanguageStages`) run in the
order the report rows need them (with several workers or `executor=ray` the pool runs them beforehand,
from `graph.stage_graph`, and this ordered loop finds them all in the memo); then the report, runs.json,
diagnostics.json and the exports are written from the records.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unitrans.atomic import check_writable_dir, write_text_atomic
from unitrans.eval.report import build_results, render_markdown, write_report
from unitrans.model import runtime
from unitrans.pipeline import stages, translation
from unitrans.pipeline.cache import StageCache, StageRecord
from unitrans.pipeline.config import PipelineConfig
from unitrans.pipeline.eta import RunProgress, plan_lines
from unitrans.pipeline.export import export_run
from unitrans.pipeline.graph import planned_stages, stage_graph
from unitrans.pipeline.language import LanguageStages
from unitrans.pipeline.parallel import StagePool, resolve_workers
from unitrans.pipeline.stages import StageContext
from unitrans.pipeline.variants import VARIANTS, paper_variant, report_rows, required_models, row_title

logger = logging.getLogger(__name__)


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
    languages = _read_inputs(ctx)
    dictionary = translation.user_dictionary(config)  # a malformed dictionary too
    logger.info("models needed: %s", ", ".join(required_models(config.variants)))
    logger.info("compute: %s", runtime.describe_compute(runtime.pick_device(None)))
    workers = resolve_workers(config.workers)
    ctx.eta = RunProgress(planned_stages(ctx, languages), workers, matmul_gflops=_matmul_probe())
    logger.info("%s", ctx.eta.start_line())
    if workers > 1 or config.executor != "local":
        with StagePool(ctx, workers, config.executor, on_start=ctx.announce) as pool:
            pool.run_graph(stage_graph(languages, config))

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


def _read_inputs(ctx: StageContext) -> dict[str, LanguageStages]:
    """Every target's stages, with every input read and checked first: a missing or malformed file
    fails before any training."""
    source = stages.read_source(ctx.config)
    shared_models: dict = {}
    return {lang: LanguageStages(ctx, source, lang, shared_models) for lang in ctx.config.targets}


def plan_run(config: PipelineConfig) -> list[str]:
    """What `run_pipeline(config)` would do, without doing it (`unitrans run --plan`): every stage, cached
    or to run, with an estimated time. Reads the inputs and the cache; writes nothing, creates no folder."""
    ctx = StageContext(StageCache(config.cache_root, verify=config.verify), config, False)
    languages = _read_inputs(ctx)
    translation.user_dictionary(config)
    return plan_lines(planned_stages(ctx, languages), resolve_workers(config.workers), _matmul_probe())


def _matmul_probe() -> float | None:
    """This CPU's one-thread matmul speed for the ETA before any stage time exists (None on a GPU)."""
    device = runtime.pick_device(None)
    return runtime.matmul_gflops(runtime.use_bf16(device, None)) if device.type == "cpu" else None


def summary_lines(result: RunResult) -> list[str]:
    """One line per stage for the console: what ran, what came from the cache."""
    ran = [r for r in result.records if not r.cached]
    n = len(result.records)
    return [f"{n} stages: {len(ran)} ran, {n - len(ran)} cached (skipped)"]
