"""The whole-run estimate on hand-made stage timings: rates per kind, the critical path against the work
per worker, running stages, and no estimate without a basis."""

from __future__ import annotations

from pathlib import Path

import pytest

from unitrans.pipeline.cache import StageRecord
from unitrans.pipeline.eta import (
    REFERENCE_RATES,
    PlannedStage,
    RunProgress,
    plan_lines,
    rates,
    rough,
    speedup,
    time_left,
)


def stage(key: str, work: float, needs: tuple[str, ...] = (), kind: str = "k", **kw) -> PlannedStage:
    return PlannedStage(
        key, f"stage {key}", kind, work, needs, kw.get("cached", False), kw.get("seconds", 0.0),
        kw.get("cores", 1),
    )  # fmt: skip


def record(key: str, seconds: float, kind: str, cached: bool = False, cores: int = 1) -> StageRecord:
    return StageRecord(kind, f"stage {key}", key, Path("/nowhere"), cached, seconds, cores=cores)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_measured_kind_uses_its_own_rate_and_the_others_the_reference_scaled():
    got = rates([("model", 50_000, 100.0)])
    assert got is not None
    assert got["model"] == pytest.approx(100 / 50_000)
    scale = 100 / (1.84e-3 * 50_000)  # this machine against the reference
    assert got["probs"] == pytest.approx(0.44e-3 * scale)
    assert got["votes"] == pytest.approx(0.05 * scale)
    mixed = rates([("model", 50_000, 100.0), ("model", 50_000, 80.0), ("probs", 10_000, 6.0)])
    assert mixed is not None
    assert mixed["model"] == pytest.approx(180 / 100_000)
    assert mixed["probs"] == pytest.approx(6 / 10_000)
    assert mixed["student"] == pytest.approx(1.47e-3 * 186 / (1.84e-3 * 100_000 + 0.44e-3 * 10_000))
    assert set(REFERENCE_RATES) <= set(mixed)


def test_no_measurement_is_no_basis():
    assert rates([]) is None
    assert rates([("model", 1000, 0.0)]) is None  # a stage without a recorded time says nothing


def test_time_left_is_the_critical_path_or_the_work_per_worker_whichever_is_larger():
    rate = {"k": 1.0}  # work in seconds
    plan = [stage("a", 100), stage("b", 50, ("a",)), stage("c", 30)]
    assert time_left(plan, (), {}, rate, 1) == pytest.approx(180)  # all in turn
    assert time_left(plan, (), {}, rate, 2) == pytest.approx(150)  # a then b; c beside them
    assert time_left(plan, (), {}, rate, 3) == pytest.approx(150)
    wide = [stage(str(i), 50) for i in range(4)]
    assert time_left(wide, (), {}, rate, 2) == pytest.approx(100)  # two at a time, path only 50
    assert time_left(plan, ("a",), {}, rate, 2) == pytest.approx(50)  # max(b, (b + c) / 2)
    assert time_left(plan, (), {"a": 40.0}, rate, 2) == pytest.approx(110)  # a is 40 s in: 60 + 50
    assert time_left(plan, (), {"a": 130.0}, rate, 2) == pytest.approx(50)  # over its estimate: 0 left
    cached = [stage("a", 100, cached=True), stage("b", 50, ("a",)), stage("c", 30)]
    assert time_left(cached, (), {}, rate, 1) == pytest.approx(80)


def test_a_run_in_turn_gets_an_estimate_after_its_first_stage():
    clock = Clock()
    plan = [
        stage("t", 10_000, kind="translate"),
        stage("m", 20_000, ("t",), kind="model"),
        stage("p", 5_000, ("m",), kind="probs"),
    ]
    progress = RunProgress(plan, 1, clock)
    assert progress.start_line() == "run: 3 stages, 0 cached, 3 to run (1 worker); ETA after the first stage"
    assert progress.seconds_left() is None
    progress.started("stage t")
    clock.now = 30.0
    line = progress.finished(record("t", 30.0, "translate"))
    scale = 30 / (0.8e-3 * 10_000)  # 3.75
    left = 20_000 * 1.84e-3 * scale + 5_000 * 0.44e-3 * scale  # 138 + 8.25
    assert progress.seconds_left() == pytest.approx(left)
    assert line == "2 left, ETA about 2 min"


def test_two_workers_count_the_critical_path_and_what_runs_already():
    clock = Clock()
    plan = [
        stage("s", 30_000, kind="model"),
        stage("t", 10_000, kind="translate"),
        stage("r", 20_000, ("t",), kind="model"),
        stage("p", 5_000, ("s", "r"), kind="probs"),
    ]
    progress = RunProgress(plan, 2, clock)
    progress.started("stage s")
    progress.started("stage t")
    clock.now = 30.0
    progress.finished(record("t", 30.0, "translate"))
    scale = 30 / (0.8e-3 * 10_000)
    s_left = 30_000 * 1.84e-3 * scale - 30  # s has run 30 s of its estimate
    r, p = 20_000 * 1.84e-3 * scale, 5_000 * 0.44e-3 * scale
    assert progress.seconds_left() == pytest.approx(max(s_left + p, (s_left + r + p) / 2))  # path via s
    progress.started("stage r")
    clock.now = 90.0
    line = progress.finished(record("s", 90.0, "model"))
    # model measured now: 90 s / 30,000 words, so r (60 s of work) has run its 60 s; p is left
    p = 5_000 * 0.44e-3 * (30 + 90) / (0.8e-3 * 10_000 + 1.84e-3 * 30_000)
    assert progress.seconds_left() == pytest.approx(p)
    assert line == "2 left, ETA under a minute"
    assert progress.finished(record("r", 70.0, "model")) == "1 left, ETA under a minute"
    assert progress.finished(record("p", 3.0, "probs")) == "none left"


def test_times_recorded_by_an_earlier_run_are_a_basis_from_the_start():
    plan = [
        stage("t", 10_000, kind="translate", cached=True, seconds=20.0),
        stage("m", 20_000, ("t",), kind="model"),
    ]
    progress = RunProgress(plan, 1, Clock())
    assert progress.seconds_left() == pytest.approx(20_000 * 1.84e-3 * 20 / (0.8e-3 * 10_000))  # 92 s
    assert progress.start_line() == (
        "run: 2 stages, 1 cached, 1 to run (1 worker); about 2 min left, "
        "from stage times an earlier run recorded in this cache"
    )
    unknown = [stage("t", 10_000, kind="translate", cached=True), stage("m", 20_000, ("t",), kind="model")]
    assert RunProgress(unknown, 1, Clock()).start_line().endswith("; ETA after the first stage")
    assert RunProgress(plan[:1], 1, Clock()).start_line() == "run: 1 stage, all cached"


def test_estimates_read_to_the_minute():
    assert rough(59) == "under a minute"
    assert rough(150) == "about 2 min"  # 2.5 rounds to even
    assert rough(3900) == "about 1h05m"


def test_a_stage_on_several_cores_is_shorter_on_the_path_and_counts_in_full_against_the_workers():
    rate = {"k": 1.0}
    assert speedup(1) == 1.0 and speedup(2) == pytest.approx(1.82)
    alone = [stage("t", 100), stage("s", 182, ("t",), cores=2)]  # a student alone on both cores
    assert time_left(alone, (), {}, rate, 2) == pytest.approx(200)  # 100 + 182 / 1.82
    assert time_left(alone, ("t",), {"s": 50.0}, rate, 2) == pytest.approx(50)  # 91 s of 182 done
    beside = [stage("s1", 182, cores=2), stage("s2", 182, cores=2), stage("x", 182)]
    assert time_left(beside, (), {}, rate, 2) == pytest.approx(273)  # the work bound: 546 / 2
    lines = plan_lines([stage("t", 100, kind="model", cached=True, seconds=100.0),
                        stage("s", 182, ("t",), kind="model", cores=2)], 2)  # fmt: skip
    assert lines[-1].endswith("1m40s")  # 182 one-core seconds on two cores


def test_a_stage_that_ran_on_several_cores_counts_its_time_on_one_core():
    clock = Clock()
    plan = [stage("a", 1000, kind="student", cores=2), stage("b", 1000, ("a",), kind="student")]
    progress = RunProgress(plan, workers=2, clock=clock)
    progress.started("stage a")
    clock.now = 100.0
    progress.finished(record("a", 100.0, "student", cores=2))  # 100 s on two cores: 182 on one
    assert progress.seconds_left() == pytest.approx(182)  # b on one core
    cached = RunProgress([stage("a", 1000, kind="student", cached=True, seconds=100.0, cores=2),
                          stage("b", 1000, ("a",), kind="student")], workers=2)  # fmt: skip
    assert cached.seconds_left() == pytest.approx(182)


def test_a_probed_cpu_has_an_estimate_from_the_start_and_stage_times_take_over():
    """Before any stage time, a run on a CPU whose matmul probe is 2x slower than the reference's is
    estimated at twice the reference rates; the first finished stage's own rate replaces that."""
    from unitrans.pipeline.eta import REFERENCE_MATMUL_GFLOPS

    clock = Clock()
    plan = [stage("a", 10_000, kind="model"), stage("b", 10_000, ("a",), kind="model")]
    probed = RunProgress(plan, 1, clock, matmul_gflops=REFERENCE_MATMUL_GFLOPS / 2)
    assert probed.seconds_left() == pytest.approx(2 * 2 * 10_000 * REFERENCE_RATES["model"])
    assert probed.start_line() == (
        "run: 2 stages, 0 cached, 2 to run (1 worker); about 1 min left, from this CPU's matmul speed "
        "(stage times will refine it)"
    )
    probed.started("stage a")
    clock.now = 10.0
    probed.finished(record("a", 10.0, "model"))
    assert probed.seconds_left() == pytest.approx(10.0)  # b at a's measured rate
    assert RunProgress(plan, 1, clock).start_line().endswith("; ETA after the first stage")
