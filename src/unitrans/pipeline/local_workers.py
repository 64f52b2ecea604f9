"""`executor=local`: the stages that have to run, in spawned worker processes on this machine.

Each worker is a spawned process with its share of the threads (`parallel.stage_threads`, set in its
environment before numpy or torch load their BLAS); with several GPUs each is pinned to its own
(`gpu_pins`). Workers die with the parent process (a `kill -9` of `unitrans run` leaves none behind),
and a worker killed by the OS ends the run with one line naming its stage. The worker side of a stage
(`_run_in_worker`, `worker_args`, the log set-up) also serves `ray_executor`.

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
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unitrans.errors import UnitransError
from unitrans.pipeline.cache import StageCache, StageRecord
from unitrans.pipeline.parallel import StageCall, stage_threads

if TYPE_CHECKING:
    from unitrans.pipeline.config import PipelineConfig
    from unitrans.pipeline.stages import StageContext

logger = logging.getLogger(__name__)

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def gpu_pins(workers: int, device_count: int, visible: str | None = None) -> list[str] | None:
    """The CUDA_VISIBLE_DEVICES of each worker process: worker i sees only GPU i mod `device_count`, as
    its cuda:0, so stages beside each other never share a device. None with fewer than two GPUs (one GPU
    is shared as before). `visible` is the parent's own CUDA_VISIBLE_DEVICES: its ids are the ones used."""
    if device_count < 2 or workers < 2:
        return None
    ids = [d.strip() for d in visible.split(",") if d.strip()] if visible else []
    ids = ids[:device_count] if len(ids) >= device_count else [str(i) for i in range(device_count)]
    return [ids[i % device_count] for i in range(workers)]


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
"""In a worker: the file naming the stage it runs (see `LocalWorkers._died`)."""


def _on_sigterm(signum: int, frame: object) -> None:
    """The pool terminates the surviving workers when one died: they say they were not the one."""
    if _status_file is not None:
        _status_file.unlink(missing_ok=True)
    os._exit(128 + signum)


def _init_worker(
    threads: int, parent_pid: int, status_dir: str, logs: LogSetup | None, gpus: GpuQueue | None = None
) -> None:
    global _status_file
    die_with_parent(parent_pid)
    if gpus is not None:  # before anything touches CUDA: each worker takes the next GPU of the queue
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus.get()
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


GpuQueue = Any
"""A spawn-context `SimpleQueue` of CUDA_VISIBLE_DEVICES values, one taken by each starting worker."""


def start_workers(
    workers: int, threads: int, status_dir: Path, gpus: Sequence[str] | None = None
) -> ProcessPoolExecutor:
    """`workers` spawned processes with `threads` threads each, all started before this returns; with
    `gpus` (one CUDA_VISIBLE_DEVICES value per worker, see `gpu_pins`) each is pinned to its own GPU."""
    context = multiprocessing.get_context("spawn")
    queue = None
    if gpus is not None:
        queue = context.SimpleQueue()
        for gpu in gpus:
            queue.put(gpu)
    with _thread_env(threads):
        pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(threads, os.getpid(), str(status_dir), _log_setup(), queue),
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


class LocalWorkers:
    """`executor=local`: spawned worker processes on this machine, started on the first submit; with
    several GPUs each worker is pinned to one (`gpu_pins`)."""

    def __init__(self, ctx: StageContext, workers: int) -> None:
        self.ctx, self.workers = ctx, workers
        self._pool: ProcessPoolExecutor | None = None
        self._status_dir: Path | None = None

    @property
    def slots(self) -> int:
        return self.workers

    def submit(self, call: StageCall, label: str, threads: int = 0) -> Future[StageRecord]:
        """`threads` > 0: a lone stage, which sets its own threads in the worker (`runtime.torch_threads`)."""
        if self._pool is None:
            import torch

            threads = stage_threads(self.workers)
            gpus = gpu_pins(self.workers, torch.cuda.device_count(), os.environ.get("CUDA_VISIBLE_DEVICES"))
            self._status_dir = Path(tempfile.mkdtemp(prefix="unitrans-workers-"))
            self._pool = start_workers(self.workers, threads, self._status_dir, gpus)
            pinned = f", GPUs {','.join(gpus)}" if gpus else ""
            logger.info("%d worker processes, %d thread(s) each%s", self.workers, threads, pinned)
        return self._pool.submit(_run_in_worker, *worker_args(self.ctx), call, label)

    def result(self, future: Future[StageRecord], unfinished: list[str]) -> StageRecord:
        try:
            return future.result()
        except BrokenProcessPool:
            raise self._died(unfinished) from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._status_dir is not None:
            shutil.rmtree(self._status_dir, ignore_errors=True)
            self._status_dir = None

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


def worker_args(ctx: StageContext) -> tuple:
    """What `_run_in_worker` needs besides the call: the config and how to open the cache."""
    return ctx.config, ctx.cache.root, ctx.cache.version, ctx.cache.verify, ctx.progress
