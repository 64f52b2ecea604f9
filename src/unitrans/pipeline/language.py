"""The stages of one target language, memoized: each looked up (or run) once however many variants use it.

Order per target: translation (D_trans) → models per seed (Θsrc, Θtrans, Θteach, data combination) →
teacher probabilities on D_T → votes → students → test probabilities → evaluation. Θsrc's key does not
involve the target, so the model memo is shared by every language: one Θsrc per seed serves them all.
Each stage is reached through the stages it needs, so asking for a report row (`variant`) runs exactly
what that row needs; the `*_call` methods give a stage's call with its inputs bound, for the pool
(`graph.stage_graph`), and `adopt*` take a record the pool made.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

from unitrans.pipeline import denoising, distillation, stages
from unitrans.pipeline.cache import StageRecord
from unitrans.pipeline.parallel import StageCall, lone_threads
from unitrans.pipeline.stages import Corpus, StageContext
from unitrans.pipeline.variants import TEACHERS, VARIANTS
from unitrans.train.selftrain import RoundTeachers, round_teachers

ENSEMBLE_SEED_STRIDE = 1000
"""Ensemble member j of run seed s trains with seed s + 1000·j (member 0 is the run's own model)."""


class LanguageStages:
    """The stages of one target language, memoized so shared inputs run (and are logged) once."""

    def __init__(self, ctx: StageContext, source: Corpus, lang: str, models: dict) -> None:
        self.ctx, self.source, self.lang = ctx, source, lang
        self.text, self.lexicon_text = stages.read_target_text(ctx.config, lang)
        self.test = stages.read_target_test(ctx.config, lang)
        self._models = models  # shared across languages: Θsrc is keyed without the target
        self._dtrans: Corpus | None = None
        self._memo: dict[tuple, StageRecord] = {}
        self._shares: dict[str, float] = {}

    def translation_call(self) -> StageCall:
        return functools.partial(
            stages.translate, source=self.source, target_text=self.lexicon_text, lang=self.lang
        )

    def adopt_translation(self, rec: StageRecord) -> None:
        if self.ctx.plan is not None and not rec.cached:  # planned, not built: word by word, same lengths
            self._dtrans = Corpus(f"D_trans ({self.lang})", self.source.sentences, rec.key)
            return
        self._dtrans = stages.dtrans_corpus(rec, self.lang)

    def planning(self, ctx: StageContext, models: dict) -> LanguageStages:
        """This language on a planning context with empty memos (see `graph.planned_stages`); the run's
        memos stay as they were."""
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
        train = functools.partial(train, lang=self.lang)
        if kind == "trans":
            weights = self.trans_weights(seed)
            return functools.partial(train, kind="trans", data=self.dtrans(), epochs=epochs, weights=weights)
        if kind == "teach":
            init = self.model("src", seed)
            rehearsal = [self.source] if cfg.teach_data == "trans+source" else []  # none: the paper's key
            return functools.partial(
                train, kind="teach", data=self.dtrans(), epochs=cfg.teach_epochs, init=init,
                weights=self.trans_weights(seed), extra=rehearsal,
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
            ("avg", kind, seed, len(seeds)), lambda: distillation.averaged(self.ctx, runs, label=label)
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
        return self._once(key, lambda: distillation.votes(self.ctx, voters, label=label))

    def soft_targets(self, name: str, seed: int, round_: int = 1) -> StageRecord | None:
        """The round's soft targets: the soft teacher's probabilities, averaged with the previous
        student's from round 2 on (None for a variant without a soft loss)."""
        soft = list(self.teachers(name, seed, round_).soft.values())
        if len(soft) <= 1:
            return soft[0] if soft else None
        label = f"{self.lang}: soft targets of {name} round {round_} (seed {seed})"
        return self._once(
            ("soft", name, seed, round_), lambda: distillation.averaged(self.ctx, soft, label=label)
        )

    def entity_shares(self, teachers: dict[str, StageRecord]) -> dict[str, float]:
        """Each teacher's share of D_T words tagged as entities (read from the cached probabilities)."""
        for rec in teachers.values():
            if rec.key not in self._shares:
                self._shares[rec.key] = distillation.entity_share(rec)
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
        kind = self.ctx.config.student_init
        init = None if kind == "pretrained" else self.model(kind, seed)
        call = functools.partial(
            distillation.student,
            target_text=self.text,
            soft=soft,
            hard=hard,
            seed=seed,
            label=label,
            init=init,
            threads=lone_threads(self.ctx.config.student_threads),
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
