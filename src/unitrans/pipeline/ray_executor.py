"""`executor=ray`: the pipeline's stages as Ray tasks, on a cluster or on a local one started for the run.

Why Ray: several targets × seeds × an ensemble outgrow one machine, and Ray schedules Python calls over
many machines with CPU and GPU resources without the user writing a job description. Only the running
of a stage moves: `StagePool.run_graph` still decides what is ready and in which order, and the stage
writes its output into the stage cache itself, so the cache folder must be one path that every node
sees (shared storage, given with `--cache-dir`). Each task asks for as many CPUs as the threads it uses,
which is the local workers' count (`stage_threads`): the numbers are those of `executor=local` with the
same `workers`. A stage asks for one GPU when the cluster has any (Ray then sets CUDA_VISIBLE_DEVICES).

Ray is optional: this module is imported only for `executor=ray`, and a missing package is one line.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from unitrans.errors import UnitransError
from unitrans.pipeline.cache import StageRecord
from unitrans.pipeline.local_workers import THREAD_ENV, LogSetup, _log_setup, _run_in_worker, worker_args
from unitrans.pipeline.parallel import StageCall, available_cores, stage_threads

if TYPE_CHECKING:
    from unitrans.pipeline.stages import StageContext

logger = logging.getLogger(__name__)

MISSING = "executor=ray needs `pip install ray` (or `pip install 'unitrans[ray]'`)"


def import_ray() -> Any:
    """The ray package, or the one-line error that says how to get it."""
    try:
        import ray
    except ImportError:
        raise UnitransError(MISSING) from None
    return ray


def _stage_task(threads: int, logs: LogSetup | None, args: tuple, call: StageCall, label: str) -> StageRecord:
    """A stage inside a Ray worker: the local workers' thread count and log format, then the stage."""
    os.environ.update({k: str(threads) for k in THREAD_ENV})
    import torch

    torch.set_num_threads(threads)
    root = logging.getLogger()
    if logs is not None and not any(getattr(h, "_unitrans", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(logs[1], logs[2]))
        handler._unitrans = True  # type: ignore[attr-defined]  # a reused worker adds it once
        root.addHandler(handler)
        root.setLevel(logs[0])
    return _run_in_worker(*args, call, label)


class RayStages:
    """Stages as Ray tasks. Connects on the first submit: to `address` when given, else to the Ray this
    process already started (`ray.init` by a caller), else to a local cluster started for the run."""

    def __init__(self, ctx: StageContext, workers: int, address: str = "") -> None:
        self.ctx, self.workers, self.address = ctx, workers, address
        self.ray = import_ray()  # fail before any work, not at the first stage that has to run
        self._remote: Any = None
        self._slots = 1
        self._owned = False

    def _connect(self) -> None:
        ray = self.ray
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
            if self.address:
                options["address"] = self.address
            else:  # a local cluster: the cores this process may use, not every core of the machine
                options["num_cpus"] = available_cores()
            try:
                ray.init(**options)
            except (ConnectionError, RuntimeError, ValueError) as err:
                where = f"the Ray cluster at {self.address!r}" if self.address else "a local Ray cluster"
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise UnitransError(f"cannot start or reach {where}: {first}") from None
            self._owned = True
        threads = stage_threads(self.workers)
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        biggest = max((n.get("CPU", 0) for n in nodes), default=0)
        if threads > biggest:
            raise UnitransError(
                f"each stage uses {threads} threads (this machine's {threads * self.workers} shared by "
                f"workers={self.workers}) but the largest Ray node has {biggest:g} CPUs: raise --set workers"
            )
        gpus = 1 if any(n.get("GPU", 0) >= 1 for n in nodes) else 0
        slots = sum(n.get("CPU", 0) // threads for n in nodes)  # a task runs within one node
        if gpus:
            slots = min(slots, sum(n.get("GPU", 0) // 1 for n in nodes))
        self._slots = max(1, int(slots))
        # Options are set per submit on the bare remote function: Ray's `.options()` result has no
        # `.options()` of its own, and a lone stage needs other CPUs than the shared ones.
        self._remote = (ray.remote(_stage_task), threads, _log_setup(), worker_args(self.ctx))
        self._biggest, self._gpus = int(biggest), gpus
        logger.info(
            "Ray: %d node(s), stages with %d CPU(s)%s each, up to %d at once",
            len(nodes), threads, " and 1 GPU" if gpus else "", self._slots,
        )  # fmt: skip

    @property
    def slots(self) -> int:
        if self._remote is None:
            self._connect()
        return self._slots

    def submit(self, call: StageCall, label: str, threads: int = 0) -> Future[StageRecord]:
        if self._remote is None:
            self._connect()
        base, shared, logs, args = self._remote
        # a lone stage sets its own threads; it reserves as many CPUs as one node has
        cpus = min(threads, self._biggest) if threads else shared
        task = base.options(num_cpus=cpus, num_gpus=self._gpus)
        return task.remote(shared, logs, args, call, label).future()

    def result(self, future: Future[StageRecord], unfinished: list[str]) -> StageRecord:
        exceptions = self.ray.exceptions
        try:
            return future.result()
        except exceptions.RayTaskError as err:  # the stage raised: the same error as in a local run
            raise (getattr(err, "cause", None) or err) from None
        except exceptions.RayError as err:  # the worker or its node died, or ran out of memory
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise UnitransError(f"Ray worker for {unfinished[0]} failed: {first}") from None

    def close(self) -> None:
        if self._owned:
            self.ray.shutdown()
            self._owned = False
        self._remote = None
