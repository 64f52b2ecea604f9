"""`unitrans run`: every selected variant, for every target language and seed, through the stage cache.

Order per target: translation (D_trans) → models per seed (Θsrc, Θtrans, Θteach, data combination) →
teacher probabilities on D_T → votes → students → test probabilities → evaluation; then the report.
Θsrc's key does not involve the target, so one Θsrc per seed serves every target language.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unitrans.eval.report import build_results, render_markdown, write_report
from unitrans.pipeline import stages
from unitrans.pipeline.cache import StageCache, StageRecord
from unitrans.pipeline.config import PipelineConfig
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


ENTITY_SHARE_RATIO = 1.5
"""A teacher tagging this many times more target words as entities than another gets a warning."""


def _warn_if_teachers_disagree(label: str, shares: dict[str, float]) -> None:
    low, high = min(shares, key=shares.__getitem__), max(shares, key=shares.__getitem__)
    if shares[low] > 0 and shares[high] / shares[low] >= ENTITY_SHARE_RATIO:
        logger.warning(
            "%s: Θ%s tags %.1f%% of the unlabelled target words as entities, Θ%s %.1f%%; the translated "
            "training data may not look like target text (its casing, for one: try --set casing=target)",
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

    def dtrans(self) -> Corpus:
        if self._dtrans is None:
            rec = stages.translate(self.ctx, self.source, self.text, self.lang)
            self._dtrans = stages.dtrans_corpus(rec, self.lang)
        return self._dtrans

    def model(self, kind: str, seed: int) -> StageRecord:
        cfg = self.ctx.config
        memo_key = (kind, seed) if kind == "src" else (kind, seed, self.lang)
        if memo_key in self._models:
            return self._models[memo_key]
        lr, epochs = cfg.teacher_lr, cfg.epochs
        if kind == "src":
            rec = stages.train_model(self.ctx, "src", self.source, seed=seed, lr=lr, epochs=epochs)
        elif kind == "trans":
            rec = stages.train_model(self.ctx, "trans", self.dtrans(), seed=seed, lr=lr, epochs=epochs)
        elif kind == "teach":
            rec = stages.train_model(
                self.ctx,
                "teach",
                self.dtrans(),
                seed=seed,
                lr=lr,
                epochs=cfg.teach_epochs,
                init=self.model("src", seed),
            )
        elif kind == "combo":
            rec = stages.train_model(
                self.ctx, "combo", self.source, seed=seed, lr=lr, epochs=epochs, extra=[self.dtrans()]
            )
        else:
            raise ValueError(f"unknown model kind {kind!r}")
        self._models[memo_key] = rec
        return rec

    def _once(self, key: tuple, make: Callable[[], StageRecord]) -> StageRecord:
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def probs(self, model: StageRecord, data: Corpus, label: str) -> StageRecord:
        return self._once(
            ("probs", model.key, data.key), lambda: stages.probabilities(self.ctx, model, data, label=label)
        )

    def teacher(self, kind: str, seed: int, ensemble: bool) -> StageRecord:
        """Teacher probabilities on D_T: one run, or the mean of M runs (Eq. 14)."""
        members = self.ctx.config.ensemble if ensemble else 1
        runs = [
            self.probs(self.model(kind, s), self.text, f"{self.lang}: {kind} (seed {s}) on D_T")
            for s in (seed + ENSEMBLE_SEED_STRIDE * j for j in range(members))
        ]
        label = f"{self.lang}: {kind} ensemble of {members} (seed {seed}) on D_T"
        return self._once(("avg", kind, seed, members), lambda: stages.averaged(self.ctx, runs, label=label))

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

    def variant(self, name: str, seed: int) -> tuple[StageRecord, StageRecord, StageRecord | None]:
        """(model or student record, evaluation record, votes record or None) of one variant and seed."""
        v = VARIANTS[name]
        hard = None
        if v.model is not None:
            model = self.model(v.model, seed)
        else:
            hard = self.votes(seed, v.ensemble) if v.hard else None
            soft = self.teacher(v.soft_teacher, seed, v.ensemble) if v.soft_teacher else None
            label = f"{self.lang}: student {name} (seed {seed})"
            model = self._once(
                ("student", name, seed),
                lambda: stages.student(self.ctx, self.text, soft=soft, hard=hard, seed=seed, label=label),
            )
        test_probs = self.probs(model, self.test, f"{self.lang}: {name} (seed {seed}) on test")
        ev = self._once(
            ("eval", test_probs.key),
            lambda: stages.evaluate(
                self.ctx, test_probs, self.test, label=f"{self.lang}: evaluate {name} (seed {seed})"
            ),
        )
        return model, ev, hard


def run_pipeline(
    config: PipelineConfig,
    *,
    progress: bool = True,
    after_stage: Callable[[StageRecord], None] | None = None,
) -> RunResult:
    """Run (or resume) the configured variants and write the report into `config.out_dir`."""
    config.out_dir.mkdir(parents=True, exist_ok=True)
    config.write(config.out_dir / "config.json")
    ctx = StageContext(StageCache(config.cache_root), config, progress, after_stage=after_stage)
    source = stages.read_source(config)
    languages = {}
    shared_models: dict = {}
    for lang in config.targets:  # read every input first: a missing file fails before any training
        languages[lang] = _Language(ctx, source, lang, shared_models)
    logger.info("models needed: %s", ", ".join(required_models(config.variants)))

    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    coverage: dict[str, list[float]] = {}
    teacher_shares: dict[str, list[dict[str, float]]] = {}
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
    }
    paths = write_report(config.out_dir, results, **report_args)
    runs_path = config.out_dir / "runs.json"
    tmp = runs_path.with_name(".runs.json.tmp")
    tmp.write_text(json.dumps(runs, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, runs_path)
    paths["runs"] = runs_path
    markdown = render_markdown(results, **report_args)
    return RunResult(results, runs, coverage, list(ctx.records), paths, markdown)


def summary_lines(result: RunResult) -> list[str]:
    """One line per stage for the console: what ran, what came from the cache."""
    ran = [r for r in result.records if not r.cached]
    n = len(result.records)
    return [f"{n} stages: {len(ran)} ran, {n - len(ran)} cached (skipped)"]
