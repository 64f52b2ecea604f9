"""How far a run is: how many stages it has, how many are left, and an estimate of the time left.

Why this model: a stage's time is close to proportional to the words it processes times its passes over
them (training: words × epochs; probabilities and translation: words), at a rate per stage kind that
depends on the machine, the thread layout and the load. So each remaining stage is estimated as its work
× its kind's rate, and the rates are measured, not guessed: a kind's rate is the measured seconds over the
work of the stages of that kind that finished in this run (until one stage of this run has finished:
what an earlier run recorded in this cache's manifests for the stages found cached). A kind with no
measurement yet takes its rate from `REFERENCE_RATES` (the quick preset's recorded stage times) scaled by
how fast this machine ran the stages measured so far against that reference. Several workers: the time
left is the larger of the critical path through the remaining stages and the remaining work divided by
the workers (a stage cannot start before what it needs is done; workers cannot do more than their
share). Times are counted on one core: a student that runs alone on all cores (the paper preset's split
student, the quick preset's) records its cores in its manifest, its wall time counts × `speedup`, and its
estimate is that much shorter on the critical path, while its work counts in full against the workers (so
students beside other stages, one core each, are estimated right too). With no measurement at all the
reference rates are scaled by this CPU's one-thread matmul probe (`machine_scale`); without a probe (on a GPU)
there is no basis, and no estimate is shown until a stage ends. Simple on purpose: it says "about N min",
never more digits than it can know.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from unitrans.pipeline.cache import StageRecord

REFERENCE_RATES: dict[str, float] = {
    "translate": 0.80e-3,
    "model": 1.84e-3,
    "student": 1.47e-3,
    "probs": 0.44e-3,
    "votes": 0.05,
    "ensemble": 0.15,
    "evaluate": 0.35,
}
"""Seconds per unit of work, by stage (kind). Sized stages (translate, model, student, probs) count words
× passes: from the quick preset on Spanish (benchmarks/README.md, the 547 s run: 2,000 English sentences of
29,167 words, 2,000 Spanish of 64,109, test 51,533; two workers of one thread): translation 75 s / 93,276
words, Θsrc 105 s, Θtrans 109 s and Θteach 54 s / (29,167 × epochs), the student 283 s / (64,109 × 3),
probabilities 30 s on D_T and 21.5 s on test. The rest count one unit per stage: votes, an ensemble
average of three and an evaluation measured at the quick preset's Spanish sizes on the development
machine (0.05, 0.14, 0.34 s)."""


REFERENCE_MATMUL_GFLOPS = 200.0
"""What `runtime.matmul_gflops` would read on the machine of `REFERENCE_RATES`, for `--plan` on a machine
with no stage times yet. Calibrated where it is needed (`benchmarks/calibrate_plan.py`): on the AVX2-only AMD
EPYC (fp32) the probe reads 87–95 GFLOP/s, and three quick-preset runs' stages took 2.14–2.40× the one-core
seconds that `REFERENCE_RATES` predict (Spanish alone: 2,741 s against 1,227), which puts the reference at
194–209 GFLOP/s (benchmarks/README.md, "--plan on a CPU without native bf16"). A faster probe keeps the
reference rates (`machine_scale` never goes under 1): on CPUs with native bf16 the rest of a step, not its
matmuls, sets the pace."""


def machine_scale(gflops: float | None) -> float:
    """How many times the reference rates this machine's stages take, from its matmul probe (1 without)."""
    if gflops is None or gflops <= 0:
        return 1.0
    return max(1.0, REFERENCE_MATMUL_GFLOPS / gflops)


def probed_rates(gflops: float | None) -> dict[str, float]:
    """`REFERENCE_RATES` at this machine's speed (`machine_scale`): the rates before any stage time."""
    scale = machine_scale(gflops)
    return {k: r * scale for k, r in REFERENCE_RATES.items()}


@dataclass(frozen=True)
class PlannedStage:
    """One stage of the run as planned before it starts."""

    key: str
    label: str
    kind: str
    work: float
    """Words × passes for sized stages, 1 for the others (see `REFERENCE_RATES`)."""
    needs: tuple[str, ...]
    """Keys of its inputs (those that are stages of the plan are what it waits for)."""
    cached: bool
    seconds: float = 0.0
    """For a cached stage: the time its manifest recorded (0 when unknown)."""
    cores: int = 1
    """Cores it runs on (a cached stage: ran on); more than one only for a student that runs alone."""


def planned(rec: StageRecord, inputs: Mapping[str, str], work: float) -> PlannedStage:
    return PlannedStage(
        rec.key, rec.label, rec.stage, work, tuple(inputs.values()), rec.cached, rec.seconds, rec.cores
    )


PARALLEL_GAIN = 0.82
"""What each core beyond the first adds to a stage that runs on several: a split student took 8m58s in two
batch parts side by side against 16m21s with the parts in turn on one core (benchmarks/README.md, "Split
students beside other stages"), 1.82× for two cores."""


def speedup(cores: int) -> float:
    """How much faster a stage runs on `cores` cores than on one."""
    return 1.0 + PARALLEL_GAIN * (max(cores, 1) - 1)


Measurement = tuple[str, float, float]
"""(kind, work, seconds on one core) of one finished stage: a stage that ran on several cores counts its
wall time × `speedup`, so one rate per kind serves stages run alone and beside others."""


def measurement(kind: str, work: float, seconds: float, cores: int) -> Measurement:
    return kind, work, seconds * speedup(cores)


def rates(measured: Iterable[Measurement]) -> dict[str, float] | None:
    """Seconds per unit of work by kind, or None without any measurement (no basis).

    A measured kind: its own seconds over its own work. Any other kind: its reference rate times the
    machine's speed against the reference (measured seconds over what the reference rates predict)."""
    seconds: dict[str, float] = {}
    work: dict[str, float] = {}
    for kind, w, s in measured:
        if w > 0 and s > 0:
            seconds[kind] = seconds.get(kind, 0.0) + s
            work[kind] = work.get(kind, 0.0) + w
    if not seconds:
        return None
    known = [k for k in seconds if k in REFERENCE_RATES]
    predicted = sum(REFERENCE_RATES[k] * work[k] for k in known)
    scale = sum(seconds[k] for k in known) / predicted if predicted else 1.0
    out = {k: r * scale for k, r in REFERENCE_RATES.items()}
    out.update({k: seconds[k] / work[k] for k in seconds})
    return out


def estimate(stage: PlannedStage, rate: Mapping[str, float]) -> float:
    """Estimated seconds of a stage; a kind the table does not know and this run has not
    measured yet costs the mean of the rates known."""
    if stage.kind in rate:
        return rate[stage.kind] * stage.work
    return stage.work * sum(rate.values()) / len(rate)


def time_left(
    plan: Sequence[PlannedStage],
    done: Iterable[str],
    running: Mapping[str, float],
    rate: Mapping[str, float],
    workers: int,
) -> float:
    """Seconds until the last stage is done: max(critical path, remaining work / workers).

    `plan` lists every stage after those it needs; `done` holds finished keys, `running` maps the keys of
    running stages to their seconds so far (counted off their estimate). Cached stages cost nothing. Work
    is in one-core seconds; a stage on several cores (a student alone) is that much shorter on the
    critical path, and counts in full against the workers."""
    finished = set(done)
    finish: dict[str, float] = {}
    total = 0.0
    for stage in plan:
        gain = speedup(stage.cores)
        if stage.key in finished or (stage.cached and stage.key not in running):
            cost = 0.0
        else:
            cost = max(estimate(stage, rate) - running.get(stage.key, 0.0) * gain, 0.0)
        total += cost
        finish[stage.key] = cost / gain + max((finish.get(n, 0.0) for n in stage.needs), default=0.0)
    critical = max(finish.values(), default=0.0)
    return max(critical, total / max(workers, 1))


def duration(seconds: float) -> str:
    """12.3s, 4m05s, 1h02m: stage lines stay short and readable at any length."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def rough(seconds: float) -> str:
    """An estimate to the minute: it is not known any better."""
    if seconds < 60:
        return "under a minute"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60}h{minutes % 60:02d}m"


NO_BASIS = "ETA after the first stage"


def plan_lines(plan: Sequence[PlannedStage], workers: int, matmul_gflops: float | None = None) -> list[str]:
    """`unitrans run --plan`: a summary line, then every stage with its status and estimated time.

    The rates are those an earlier run recorded in this cache when there are any (as the run's first
    line uses them), else `REFERENCE_RATES` scaled by `machine_scale(matmul_gflops)` (this machine's
    one-thread matmul probe, None where none was taken): a size, not a promise, and the line says which
    basis it used."""
    earlier = rates(measurement(s.kind, s.work, s.seconds, s.cores) for s in plan if s.cached)
    scale = machine_scale(matmul_gflops)
    rate = earlier or probed_rates(matmul_gflops)
    basis = "from stage times an earlier run recorded in this cache"
    if not earlier:
        basis = "at the reference speed (the quick preset's stage times on a 2-core CPU, two workers)"
        if scale > 1.0:
            basis = (
                f"at {scale:.1f}x the reference stage times (the quick preset's on a 2-core CPU, two "
                f"workers): this CPU's one-thread matmuls run {matmul_gflops:.0f} GFLOP/s against the "
                f"reference's {REFERENCE_MATMUL_GFLOPS:.0f}"
            )
    to_run = [s for s in plan if not s.cached]
    n = len(plan)
    head = f"plan: {n} stage{'s' if n != 1 else ''}, {n - len(to_run)} cached, {len(to_run)} to run"
    head += f" ({workers} worker{'s' if workers != 1 else ''})"
    if to_run:
        head += f"; {rough(time_left(plan, (), {}, rate, workers))} {basis}"
    width = max((len(s.label) for s in plan), default=0)
    lines = [head]
    for stage in plan:
        wall = estimate(stage, rate) / speedup(stage.cores)
        status, est = ("cached", "") if stage.cached else ("to run", duration(wall))
        lines.append(f"  {status:<7} {stage.label:<{width}}  {est}".rstrip())
    return lines


class RunProgress:
    """Follows a run against its plan; the stage code reports starts and ends, and logs what this returns."""

    def __init__(
        self,
        plan: Sequence[PlannedStage],
        workers: int,
        clock: Callable[[], float] = time.monotonic,
        matmul_gflops: float | None = None,
    ) -> None:
        unique: dict[str, PlannedStage] = {}
        for stage in plan:
            unique.setdefault(stage.key, stage)
        self.plan = list(unique.values())
        self.workers = workers
        self.clock = clock
        self._by_key = {s.key: s for s in self.plan}
        self._by_label = {s.label: s.key for s in self.plan}
        self._to_run = {s.key for s in self.plan if not s.cached}
        self._earlier: list[Measurement] = [
            measurement(s.kind, s.work, s.seconds, s.cores) for s in self.plan if s.cached
        ]
        self._measured: list[Measurement] = []
        # Before any stage time: the reference rates at this machine's matmul speed, where it was probed.
        self._probed = None if matmul_gflops is None else probed_rates(matmul_gflops)
        self._started: dict[str, float] = {}
        self._done: set[str] = set()

    def start_line(self) -> str:
        """The run's first line: its stages, how many are cached, how many will run, and the time left."""
        n, to_run = len(self.plan), len(self._to_run)
        stages = f"run: {n} stage{'s' if n != 1 else ''}"
        if not to_run:
            return f"{stages}, all cached"
        workers = f"{self.workers} worker{'s' if self.workers != 1 else ''}"
        line = f"{stages}, {n - to_run} cached, {to_run} to run ({workers})"
        left = self.seconds_left()
        if left is None:
            return f"{line}; {NO_BASIS}"
        if rates(self._earlier) is None:
            return f"{line}; {rough(left)} left, from this CPU's matmul speed (stage times will refine it)"
        return f"{line}; {rough(left)} left, from stage times an earlier run recorded in this cache"

    def started(self, label: str) -> None:
        key = self._by_label.get(label)
        if key is not None:
            self._started[key] = self.clock()

    def finished(self, rec: StageRecord) -> str:
        """Take a finished stage (cached or run) into account; returns e.g. '3 left, ETA about 4 min'."""
        self._started.pop(rec.key, None)
        self._done.add(rec.key)
        stage = self._by_key.get(rec.key)
        if not rec.cached and stage is not None:
            self._measured.append(measurement(stage.kind, stage.work, rec.seconds, rec.cores))
        left = len(self._to_run - self._done)
        if not left:
            return "none left"
        seconds = self.seconds_left()
        eta = NO_BASIS if seconds is None else f"ETA {rough(seconds)}"
        return f"{left} left, {eta}"

    def seconds_left(self) -> float | None:
        """The estimate for the whole run from now, or None without a basis."""
        rate = rates(self._measured) or rates(self._earlier) or self._probed
        if rate is None:
            return None
        now = self.clock()
        running = {k: now - t for k, t in self._started.items()}
        return time_left(self.plan, self._done, running, rate, self.workers)
