"""Independent stages side by side, each with a share of the CPU threads: which stage runs when.

Why: on a small CPU one training does not use its cores well (hidden size 384, batches of ~40-word
sentences: thread hand-offs and memory-bound ops). Measured on the 2-core development machine (me5-small,
1,200 English sentences, 1 epoch): one training with 2 threads took 21.3 s, two trainings side by side
with 1 thread each took 28.0 s together, 1.5x the throughput. The runner declares each stage
with the stages it needs (`GraphTask`), and `StagePool.run_graph` starts every stage as soon as those
are done: Θtrans starts when its translation is ready, without waiting for a Θsrc training beside it.

Stages already in the cache are taken in-process (no process is started for them). Every stage that
has to run goes to a worker, even when nothing runs beside it: numbers depend on the thread count, and
a resumed run that trained a lone Θsrc in the main process with all threads gave other weights than
the uninterrupted run that trained it beside the translation. So a stage's numbers depend on the
machine and the `workers` setting, never on what else ran or was cached.

Where the stages run is an `Executor` (submit a call, get a future): `local_workers.LocalWorkers`
(spawned processes on this machine; several GPUs: one worker per GPU, pinned), or
`ray_executor.RayStages` for a cluster; each module is imported only when its executor is chosen, and
both import this one. What runs when (ready set, order, each stage once, cycle checks) is decided in
`StagePool.run_graph` alone, for both.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from unitrans.errors import UnitransError
from unitrans.pipeline.cache import StageRecord

if TYPE_CHECKING:
    from unitrans.pipeline.stages import StageContext

logger = logging.getLogger(__name__)

StageCall = Callable[["StageContext"], StageRecord]
"""One stage with its inputs bound (a `functools.partial` of a function in `stages`); picklable."""


class NotCached(Exception):
    """Raised by a probing context for a stage that still has to run."""


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def resolve_workers(requested: int, device: str | None = None) -> int:
    """0 = auto: two processes on a CPU with at least two cores; on GPUs one per GPU (see
    `local_workers.gpu_pins`)."""
    if requested > 0:
        return requested
    import torch

    on_gpu = (device or "").startswith("cuda") or (device is None and torch.cuda.is_available())
    if on_gpu:
        return max(1, torch.cuda.device_count())
    return 1 if available_cores() < 2 else 2


def stage_threads(workers: int) -> int:
    """Threads of each stage run beside others: this process's threads shared by `workers`. Every
    executor uses it, so a stage's numbers are the same wherever it runs."""
    import torch

    return max(1, torch.get_num_threads() // workers)


def lone_threads(setting: str) -> int:
    """Threads of a stage that runs alone (`student_threads=all` or `split`): all of this process's; 0 for
    a stage that shares them ("shared"). Decided from settings and the machine, never from what else runs."""
    return stage_threads(1) if setting in ("all", "split") else 0


def on_cpu() -> bool:
    """Whether stages compute on the CPU (they take CUDA wherever there is one). Only there does a student
    gain from running alone: with GPUs, one per worker, it would only idle the others."""
    import torch

    return not torch.cuda.is_available()


class Executor(Protocol):
    """Where `StagePool.run_graph` sends the stages that have to run: submit a call, get a future."""

    @property
    def slots(self) -> int:
        """How many stages may run at once (asked only when a stage is about to be submitted)."""
        ...

    def submit(self, call: StageCall, label: str, threads: int = 0) -> Future[StageRecord]:
        """Run `call`; `threads` > 0 for a stage that runs alone with that many threads (it sets them
        itself; an executor that reserves CPUs reserves that many)."""
        ...

    def result(self, future: Future[StageRecord], unfinished: list[str]) -> StageRecord:
        """The record of a finished future; a worker that vanished is one line naming a stage among
        `unfinished` (the future's own stage first, then the others still running)."""
        ...

    def close(self) -> None: ...


EXECUTORS = ("local", "ray")


class StagePool:
    """Runs the stages of a graph side by side on an executor (`EXECUTORS`): the scheduling is here, in
    one place; the executor only runs the calls it is handed. `executor="local"` with one worker runs
    every stage in this process, in dependency order."""

    def __init__(
        self,
        ctx: StageContext,
        workers: int,
        executor: str | Executor = "local",
        on_start: Callable[[str], None] | None = None,
    ) -> None:
        self.ctx, self.workers = ctx, workers
        self.on_start = on_start  # called with a stage's label when it goes to a worker (its start line)
        self.executor: Executor | None
        if executor == "ray":
            from unitrans.pipeline.ray_executor import RayStages

            self.executor = RayStages(ctx, workers, ctx.config.ray_address)
        elif executor == "local":
            from unitrans.pipeline.local_workers import LocalWorkers

            self.executor = LocalWorkers(ctx, workers) if workers > 1 else None
        elif isinstance(executor, str):
            raise UnitransError(f"expected executor among {', '.join(EXECUTORS)}, found {executor!r}")
        else:
            self.executor = executor

    def __enter__(self) -> StagePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.executor is not None:
            self.executor.close()

    def _cached(self, call: StageCall) -> StageRecord | None:
        probe = replace(self.ctx, probe=True, records=[], after_stage=None)
        try:
            return call(probe)
        except NotCached:
            return None

    def run_graph(self, tasks: Sequence[GraphTask]) -> None:
        """Run every task once its `needs` are done; at most `executor.slots` at a time, earlier tasks first.

        Each task's call is made only when its needs are adopted, so it sees their records. Tasks given
        twice (same `ident`) run once. Numbers do not depend on the order: every stage that runs goes to
        the executor with the same thread count (see the module docstring).
        """
        unique: dict[tuple, GraphTask] = {}
        for task in tasks:
            unique.setdefault(task.ident, task)
        missing = {n for t in unique.values() for n in t.needs} - unique.keys()
        if missing:
            raise ValueError(f"tasks need undeclared tasks: {sorted(map(str, missing))}")
        executor = self.executor
        if executor is None:
            for task in _in_dependency_order(list(unique.values())):
                call, adopt = task.make()
                adopt(call(self.ctx))
            return
        from unitrans.pipeline.stages import call_label

        waiting = list(unique.values())
        done: set[tuple] = set()
        made: dict[tuple, tuple[StageCall, Callable[[StageRecord], None], StageRecord | None]] = {}
        running: dict[Future, tuple[GraphTask, Callable[[StageRecord], None], str, bool]] = {}
        after = _dependants(list(unique.values()))
        while waiting or running:
            progressed = True
            while progressed:  # take ready tasks from the cache, or start them while workers are free
                progressed = False
                for task in list(waiting):
                    if not all(n in done for n in task.needs):
                        continue
                    if task.ident not in made:  # made and looked up once, when it becomes ready
                        call, adopt = task.make()
                        made[task.ident] = (call, adopt, self._cached(call))
                    call, adopt, rec = made[task.ident]
                    threads = task.threads
                    if rec is None and threads and running:
                        if not (task.flexible and _heavy_elsewhere(task, waiting, running, after)):
                            break  # a lone stage waits for the running ones; nothing later starts before it
                        call, threads = functools.partial(call, alone=False), 0  # in a slot, beside them
                    busy = len(running) >= executor.slots or any(alone for _, _, _, alone in running.values())
                    if rec is None and busy:  # all slots taken, or a lone stage runs: nothing beside it
                        continue
                    waiting.remove(task)
                    progressed = True
                    if rec is not None:
                        adopt(self.ctx.adopt(rec))
                        done.add(task.ident)
                        break  # what it unlocked comes before later tasks
                    label = call_label(call, self.ctx.config)
                    running[executor.submit(call, label, threads)] = (task, adopt, label, threads > 0)
                    if self.on_start is not None:
                        self.on_start(label)
            if not running:
                if waiting:
                    raise ValueError("tasks wait on each other in a cycle")
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in [f for f in running if f in finished]:  # in start order
                task, adopt, label, _ = running.pop(future)
                record = executor.result(future, [label, *(lab for _, _, lab, _ in running.values())])
                adopt(self.ctx.adopt(record))
                done.add(task.ident)


@dataclass(frozen=True)
class GraphTask:
    """One stage for `StagePool.run_graph`: `make` returns its call and where its record goes; it is
    called only once every task named in `needs` is done, so it can read their records."""

    ident: tuple
    needs: tuple[tuple, ...]
    make: Callable[[], tuple[StageCall, Callable[[StageRecord], None]]]
    threads: int = 0
    """0: runs beside others with its share of the threads; n > 0: runs alone, with n threads (it waits
    until nothing runs, and nothing starts beside it)."""
    flexible: bool = False
    """A lone stage (`threads` > 0) whose numbers do not depend on running alone (a split student: its
    parts give the same bits side by side or in turn). When it is ready while heavy stages run or wait
    elsewhere in the graph, it takes a free slot instead, its call made with `alone=False`; else it waits
    to run alone, as any lone stage."""
    heavy: bool = False
    """A training or translation (minutes, not seconds): worth not idling a core for while it runs."""


def _dependants(tasks: list[GraphTask]) -> dict[tuple, set[tuple]]:
    """Per task, every task that needs it, directly or not."""
    direct: dict[tuple, set[tuple]] = {t.ident: set() for t in tasks}
    for t in tasks:
        for n in t.needs:
            direct[n].add(t.ident)
    out: dict[tuple, set[tuple]] = {}

    def walk(ident: tuple) -> set[tuple]:
        if ident not in out:
            out[ident] = set()  # filled in place; cycles are reported elsewhere
            for d in direct[ident]:
                out[ident] |= {d} | walk(d)
        return out[ident]

    for t in tasks:
        walk(t.ident)
    return out


def _heavy_elsewhere(task: GraphTask, waiting: list[GraphTask], running: dict, after: dict) -> bool:
    """Whether a heavy stage other than `task` and what needs it is running or still to run: then
    waiting for the machine to empty would idle a core for minutes, and a flexible stage runs in a slot."""
    later = after[task.ident]
    others = [t for t in waiting if t.ident != task.ident and t.ident not in later]
    return any(t.heavy for t in others) or any(t.heavy for t, *_ in running.values())


def _in_dependency_order(tasks: list[GraphTask]) -> list[GraphTask]:
    """The tasks in their given order, each moved after what it needs (a stable topological sort)."""
    done: set[tuple] = set()
    out: list[GraphTask] = []
    waiting = list(tasks)
    while waiting:
        ready = next((t for t in waiting if all(n in done for n in t.needs)), None)
        if ready is None:
            raise ValueError("tasks wait on each other in a cycle")
        waiting.remove(ready)
        out.append(ready)
        done.add(ready.ident)
    return out
