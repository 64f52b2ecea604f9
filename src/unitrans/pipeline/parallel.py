"""Independent stages side by side, each in its own process with a share of the CPU threads.

Why: on a small CPU one training does not use its cores well (hidden size 384, batches of ~40-word
sentences: thread hand-offs and memory-bound ops). Measured on the 2-core development machine (me5-small,
1,200 English sentences, 1 epoch): one training with 2 threads took 21.3 s, two trainings side by side
with 1 thread each took 28.0 s together, 1.5x the throughput. Θtrans and Θteach, the teachers'
probabilities on D_T, the students of different variants and the translations of different target
languages never depend on each other, so the runner plans them in waves and runs each wave here.

Stages already in the cache are taken in-process (no process is started for them). Results go through
the stage cache as always, so a killed run resumes the same way. Numbers depend on the thread count, so
the same seed gives the same numbers for the same machine and `workers` setting.

Hand-written on `concurrent.futures` because accelerate and torch.multiprocessing target several
devices or shared tensors, not a handful of independent CPU jobs.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

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


def _init_worker(threads: int) -> None:
    os.environ.update({k: str(threads) for k in THREAD_ENV})  # before numpy or torch load their BLAS
    import torch

    torch.set_num_threads(threads)


def _run_in_worker(
    config: PipelineConfig, root: Path, version: str, progress: bool, call: StageCall
) -> StageRecord:
    from unitrans.pipeline.stages import StageContext

    return call(StageContext(StageCache(root, version=version), config, progress))


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
    """Runs waves of independent stages; worker processes start on the first wave that needs them."""

    def __init__(self, ctx: StageContext, workers: int) -> None:
        self.ctx, self.workers = ctx, workers
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> StagePool:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

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
            with _thread_env(threads):
                self._pool = ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init_worker,
                    initargs=(threads,),
                )
                # start every worker now, while the thread settings are in the environment
                for f in [self._pool.submit(_init_worker, threads) for _ in range(self.workers)]:
                    f.result()
            logger.info("%d worker processes, %d thread(s) each", self.workers, threads)
        return self._pool

    def run(self, calls: Sequence[StageCall]) -> list[StageRecord]:
        """Records of every call, in order; the ones not cached run side by side."""
        results: list[StageRecord | None] = [None] * len(calls)
        todo = []
        for i, call in enumerate(calls):
            rec = self._cached(call) if self.workers > 1 else None
            if rec is not None:
                results[i] = self.ctx.adopt(rec)
            else:
                todo.append(i)
        if self.workers <= 1 or len(todo) <= 1:
            for i in todo:
                results[i] = calls[i](self.ctx)
            return results  # type: ignore[return-value]
        pool = self._executor()
        cache = self.ctx.cache
        args = (self.ctx.config, cache.root, cache.version, self.ctx.progress)
        futures: dict[int, Future] = {i: pool.submit(_run_in_worker, *args, calls[i]) for i in todo}
        for i, future in futures.items():  # in submission order, so records and hooks stay deterministic
            results[i] = self.ctx.adopt(future.result())
        return results  # type: ignore[return-value]
