"""Independent stages side by side, each in its own process with a share of the CPU threads.

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
machine and the `workers` setting, never on what else ran or was cached. Workers die with the parent
process (a `kill -9` of `unitrans run` leaves none behind), and a worker killed by the OS ends the run
with one line naming its stage.

Hand-written on `concurrent.futures` because accelerate and torch.multiprocessing target several
devices or shared tensors, not a handful of independent CPU jobs.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from unitrans.errors import UnitransError
from unitrans.pipeline.cache import StageCache, StageRecord

if TYPE_CHECKING:
    from unitrans.pipeline.config import PipelineConfig
    from unitrans.pipeline.stages import StageContext

logger = logging.getLogger(__name__)

StageCall = Callable[["StageContext"], StageRecord]
"""One stage with its inputs bound (a `functools.partial` of a function in `stages`); picklable."""

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class NotCached(Exception):
    """Raised by a probing context for a stage that still has to run."""


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def resolve_workers(requested: int, device: str | None = None) -> int:
    """0 = auto: two processes on a CPU with at least two cores, one on a GPU (it is one device)."""
    if requested > 0:
        return requested
    import torch

    on_gpu = (device or "").startswith("cuda") or (device is None and torch.cuda.is_available())
    return 1 if on_gpu or available_cores() < 2 else 2


PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Linux: have the kernel SIGKILL this process when its parent dies, then close the race of a parent
    that died before the request (we would have been re-parented already). Elsewhere: nothing.

    The kernel sends the signal when the *thread* that started the worker ends, so pools are started from
    the thread that runs the pipeline (`ProcessPoolExecutor.submit` spawns in the caller's thread)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: keep the old behaviour rather than fail
        return
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)


_status_file: Path | None = None
"""In a worker: the file naming the stage it runs (see `StagePool.run`)."""


def _on_sigterm(signum: int, frame: object) -> None:
    """The pool terminates the surviving workers when one died: they say they were not the one."""
    if _status_file is not None:
        _status_file.unlink(missing_ok=True)
    os._exit(128 + signum)


def _init_worker(threads: int, parent_pid: int, status_dir: str, logs: LogSetup | None) -> None:
    global _status_file
    die_with_parent(parent_pid)
    if logs is not None:  # info lines and warnings, formatted like the main process's
        logging.basicConfig(level=logs[0], format=logs[1], datefmt=logs[2])
    _status_file = Path(status_dir) / str(os.getpid())
    signal.signal(signal.SIGTERM, _on_sigterm)
    os.environ.update({k: str(threads) for k in THREAD_ENV})  # before numpy or torch load their BLAS
    import torch

    torch.set_num_threads(threads)


def _started() -> int:
    return os.getpid()


def _run_in_worker(
    config: PipelineConfig, root: Path, version: str, verify: str, progress: bool, call: StageCall, label: str
) -> StageRecord:
    from unitrans.pipeline.stages import StageContext

    if _status_file is not None:
        _status_file.write_text(label, encoding="utf-8")
    try:  # no per-step bars here: two workers' bars would write over each other
        ctx = StageContext(StageCache(root, version=version, verify=verify), config, False, log_done=False)
        return call(ctx)
    finally:
        if _status_file is not None:
            _status_file.unlink(missing_ok=True)


LogSetup = tuple[int, str | None, str | None]
"""(level, format, date format) of the main process's logging, handed to spawned workers."""


def _log_setup() -> LogSetup | None:
    """How the CLI configured logging (None when nobody did: workers then stay as quiet as we are)."""
    root = logging.getLogger()
    if not root.handlers or root.handlers[0].formatter is None:
        return None
    formatter = root.handlers[0].formatter
    return root.level, formatter._fmt, formatter.datefmt


def start_workers(workers: int, threads: int, status_dir: Path) -> ProcessPoolExecutor:
    """`workers` spawned processes with `threads` threads each, all started before this returns."""
    with _thread_env(threads):
        pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(threads, os.getpid(), str(status_dir), _log_setup()),
        )
        # start every worker now, while the thread settings are in the environment
        for f in [pool.submit(_started) for _ in range(workers)]:
            f.result()
    return pool


@contextlib.contextmanager
def _thread_env(threads: int) -> Iterator[None]:
    """Spawned workers read these at start-up (numpy's BLAS does too); the parent is not affected."""
    before = {k: os.environ.get(k) for k in THREAD_ENV}
    os.environ.update({k: str(threads) for k in THREAD_ENV})
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class StagePool:
    """Runs the stages of a graph side by side; worker processes start when the first uncached stage does."""

    def __init__(
        self, ctx: StageContext, workers: int, on_start: Callable[[str], None] | None = None
    ) -> None:
        self.ctx, self.workers = ctx, workers
        self.on_start = on_start  # called with a stage's label when it goes to a worker (its start line)
        self._pool: ProcessPoolExecutor | None = None
        self._status_dir: Path | None = None

    def __enter__(self) -> StagePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._status_dir is not None:
            shutil.rmtree(self._status_dir, ignore_errors=True)
            self._status_dir = None

    def _cached(self, call: StageCall) -> StageRecord | None:
        probe = replace(self.ctx, probe=True, records=[], after_stage=None)
        try:
            return call(probe)
        except NotCached:
            return None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            import torch

            threads = max(1, torch.get_num_threads() // self.workers)
            self._status_dir = Path(tempfile.mkdtemp(prefix="unitrans-workers-"))
            self._pool = start_workers(self.workers, threads, self._status_dir)
            logger.info("%d worker processes, %d thread(s) each", self.workers, threads)
        return self._pool

    def run_graph(self, tasks: Sequence[GraphTask]) -> None:
        """Run every task once its `needs` are done; at most `workers` at a time, earlier tasks first.

        Each task's call is made only when its needs are adopted, so it sees their records. Tasks given
        twice (same `ident`) run once. Numbers do not depend on the order: every stage that runs goes to
        a worker with the same thread count (see the module docstring).
        """
        unique: dict[tuple, GraphTask] = {}
        for task in tasks:
            unique.setdefault(task.ident, task)
        missing = {n for t in unique.values() for n in t.needs} - unique.keys()
        if missing:
            raise ValueError(f"tasks need undeclared tasks: {sorted(map(str, missing))}")
        if self.workers <= 1:
            for task in _in_dependency_order(list(unique.values())):
                call, adopt = task.make()
                adopt(call(self.ctx))
            return
        from unitrans.pipeline.stages import call_label

        waiting = list(unique.values())
        done: set[tuple] = set()
        made: dict[tuple, tuple[StageCall, Callable[[StageRecord], None], StageRecord | None]] = {}
        running: dict[Future, tuple[GraphTask, Callable[[StageRecord], None], str]] = {}
        args: tuple | None = None
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
                    if rec is None and len(running) >= self.workers:
                        continue
                    waiting.remove(task)
                    progressed = True
                    if rec is not None:
                        adopt(self.ctx.adopt(rec))
                        done.add(task.ident)
                        break  # what it unlocked comes before later tasks
                    pool = self._executor()
                    if args is None:
                        cache = self.ctx.cache
                        args = (self.ctx.config, cache.root, cache.version, cache.verify, self.ctx.progress)
                    label = call_label(call, self.ctx.config)
                    running[pool.submit(_run_in_worker, *args, call, label)] = (task, adopt, label)
                    if self.on_start is not None:
                        self.on_start(label)
            if not running:
                if waiting:
                    raise ValueError("tasks wait on each other in a cycle")
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in [f for f in running if f in finished]:  # in start order
                task, adopt, label = running.pop(future)
                try:
                    record = future.result()
                except BrokenProcessPool:
                    raise self._died([label, *(lab for _, _, lab in running.values())]) from None
                adopt(self.ctx.adopt(record))
                done.add(task.ident)

    def _died(self, unfinished: list[str]) -> UnitransError:
        """The one-line error for a worker that vanished, naming the stage it ran: the executor terminates
        the other workers, which remove their status files, so the files left name the dead one's stage."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        running = []
        if self._status_dir is not None:
            running = [p.read_text(encoding="utf-8") for p in sorted(self._status_dir.iterdir())]
        self.close()
        names = " or ".join(dict.fromkeys(running or unfinished)) or "a stage"
        return UnitransError(f"worker process for {names} died (killed by the OS — out of memory?)")


@dataclass(frozen=True)
class GraphTask:
    """One stage for `StagePool.run_graph`: `make` returns its call and where its record goes; it is
    called only once every task named in `needs` is done, so it can read their records."""

    ident: tuple
    needs: tuple[tuple, ...]
    make: Callable[[], tuple[StageCall, Callable[[StageRecord], None]]]


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
