"""Stages scheduled as a graph: each starts as soon as what it needs is done, not when a wave ends."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from unitrans.pipeline import local_workers
from unitrans.pipeline.parallel import GraphTask, StagePool


class Log:
    """Fake stages that record when they start and end (threads stand in for worker processes)."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.lock = threading.Lock()
        self.adopted: dict[tuple, str] = {}

    def task(
        self, ident: tuple, needs: tuple = (), seconds: float = 0.0, threads: int = 0, **flags: bool
    ) -> GraphTask:
        def call(ctx: object, alone: bool = True) -> str:
            with self.lock:
                self.events.append(f"start {ident[0]}" + ("" if alone else " in a slot"))
            time.sleep(seconds)
            with self.lock:
                self.events.append(f"end {ident[0]}")
            return f"record {ident[0]}"

        def make() -> tuple:
            assert all(n in self.adopted for n in needs), f"{ident} made before its needs were adopted"
            return call, lambda rec: self.adopted.__setitem__(ident, rec)

        return GraphTask(ident, needs, make, threads, **flags)


class ThreadWorkers:
    """An executor on threads: what `run_graph` needs from one (`parallel.Executor`), nothing more."""

    def __init__(self, ctx: object, workers: int) -> None:
        self.slots, self.pool = workers, ThreadPoolExecutor(workers)

    def submit(self, call, label: str, threads: int = 0):
        return self.pool.submit(call, None)

    def result(self, future, unfinished: list[str]):
        return future.result()

    def close(self) -> None:
        self.pool.shutdown()


@pytest.fixture
def threads_as_workers(monkeypatch):
    """StagePool with threads for processes, no cache and plain labels: only the scheduling is tested."""
    monkeypatch.setattr(local_workers, "LocalWorkers", ThreadWorkers)
    monkeypatch.setattr(StagePool, "_cached", lambda self, call: None)
    monkeypatch.setattr("unitrans.pipeline.stages.call_label", lambda call, config: "stage")
    return SimpleNamespace(adopt=lambda rec: rec, config=None)


def test_a_stage_starts_when_its_needs_are_done_not_when_its_wave_is(threads_as_workers):
    log = Log()
    tasks = [
        log.task(("src",), seconds=1.0),  # a long Θsrc beside ...
        log.task(("translate",), seconds=0.05),  # ... a short translation
        log.task(("trans",), needs=(("translate",),), seconds=0.05),  # Θtrans needs only the translation
        log.task(("teach",), needs=(("translate",), ("src",))),
    ]
    StagePool(threads_as_workers, 2).run_graph(tasks)
    ev = log.events
    assert ev.index("start trans") < ev.index("end src")  # waves would have waited for Θsrc
    assert ev.index("start teach") > ev.index("end src")
    assert log.adopted == {t.ident: f"record {t.ident[0]}" for t in tasks}


def test_no_more_than_workers_run_at_once(threads_as_workers):
    log = Log()
    tasks = [log.task((f"t{i}",), seconds=0.05) for i in range(5)]
    StagePool(threads_as_workers, 2).run_graph(tasks)
    running = peak = 0
    for event in log.events:
        running += 1 if event.startswith("start") else -1
        peak = max(peak, running)
    assert peak == 2 and len(log.adopted) == 5


def test_one_worker_runs_in_dependency_order_and_once_per_ident():
    log = Log()
    tasks = [
        log.task(("student",), needs=(("probs",),)),
        log.task(("probs",), needs=(("model",),)),
        log.task(("model",)),
        log.task(("model",)),  # wanted twice: runs once
    ]
    StagePool(SimpleNamespace(), 1).run_graph(tasks)
    assert log.events == [
        "start model",
        "end model",
        "start probs",
        "end probs",
        "start student",
        "end student",
    ]


def test_undeclared_needs_and_cycles_are_errors():
    log = Log()
    with pytest.raises(ValueError, match="undeclared"):
        StagePool(SimpleNamespace(), 1).run_graph([log.task(("a",), needs=(("b",),))])
    with pytest.raises(ValueError, match="cycle"):
        StagePool(SimpleNamespace(), 1).run_graph(
            [log.task(("a",), needs=(("b",),)), log.task(("b",), needs=(("a",),))]
        )


def test_a_lone_stage_waits_for_the_running_ones_and_runs_alone(threads_as_workers):
    """`student_threads=all`: the student starts when nothing runs, nothing starts beside it, and the
    stages listed after it wait (they would delay it); an earlier stage still runs first."""
    log = Log()
    tasks = [
        log.task(("probs",), seconds=0.3),  # running when the student becomes ready
        log.task(("votes",), seconds=0.05),
        log.task(("student",), needs=(("votes",),), seconds=0.3, threads=2),
        log.task(("test",), seconds=0.05),  # ready all along, listed after the student
        log.task(("late",), seconds=0.05),
    ]
    StagePool(threads_as_workers, 2).run_graph(tasks)
    ev = log.events
    start, end = ev.index("start student"), ev.index("end student")
    assert ev.index("end probs") < start  # waited for the running stage
    assert end == start + 1  # nothing started or ended while it ran
    assert ev.index("start test") > end and ev.index("start late") > end
    assert len(log.adopted) == 5


def test_a_flexible_lone_stage_takes_a_slot_while_heavy_stages_run(threads_as_workers):
    """A split student ready while another language's teacher trains: waiting to run alone would idle a
    core for the teacher's minutes, so it starts in the free slot beside it, its parts in turn."""
    log = Log()
    tasks = [
        log.task(("teacher",), seconds=0.4, heavy=True),
        log.task(("student",), seconds=0.05, threads=2, flexible=True, heavy=True),
        log.task(("test",), needs=(("student",),), seconds=0.01),
    ]
    StagePool(threads_as_workers, 2).run_graph(tasks)
    ev = log.events
    assert "start student in a slot" in ev
    assert ev.index("start student in a slot") < ev.index("end teacher")
    assert len(log.adopted) == 3


def test_a_flexible_stage_waits_to_run_alone_when_only_short_stages_remain(threads_as_workers):
    """One language's tail: only a prediction runs beside the ready student, and what needs the student
    does not count as work elsewhere: it waits and runs alone (parts side by side)."""
    log = Log()
    tasks = [
        log.task(("probs",), seconds=0.3),
        log.task(("student",), seconds=0.05, threads=2, flexible=True, heavy=True),
        log.task(("round2",), needs=(("student",),), seconds=0.01, heavy=True),
    ]
    StagePool(threads_as_workers, 2).run_graph(tasks)
    ev = log.events
    start = ev.index("start student")
    assert ev.index("end probs") < start and ev[start + 1] == "end student"


def test_a_flexible_stage_with_nothing_running_runs_alone(threads_as_workers):
    log = Log()
    tasks = [
        log.task(("student",), seconds=0.05, threads=2, flexible=True, heavy=True),
        log.task(("teacher",), needs=(("student",),), seconds=0.05, heavy=True),
    ]
    StagePool(threads_as_workers, 2).run_graph(tasks)
    assert log.events[:2] == ["start student", "end student"]


def test_a_lone_stage_that_is_not_flexible_never_takes_a_slot(threads_as_workers):
    """`student_threads=all`: its numbers depend on its threads, so it waits even beside heavy work."""
    log = Log()
    tasks = [
        log.task(("teacher",), seconds=0.3, heavy=True),
        log.task(("student",), seconds=0.05, threads=2, heavy=True),
    ]
    StagePool(threads_as_workers, 2).run_graph(tasks)
    assert log.events == ["start teacher", "end teacher", "start student", "end student"]
