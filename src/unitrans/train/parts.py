"""Data parallel on one CPU machine: each step's batch in P parts, run side by side in forked processes.

Why not more intra-op threads: on the 2-core development machine a training step runs 1.28–1.5x faster on two
threads than on one (many small ops, each a thread hand-off), while two halves of the batch on one thread each
run 1.9x faster (benchmarks/README.md, "Parts of a batch in processes"). Why not `torch.distributed`: on one
machine a forked helper that shares the trainable weights' memory needs no rendezvous, ports or second
optimizer: the main process sums the gradients and steps, and the helpers see the new weights.

Numbers. Part p of a step draws its dropout from a generator seeded by (seed, step, p), and the gradients
are summed in part order, g = g_0 + g_1 + … ; nothing depends on timing or on whether the parts really ran
side by side (`PartWorkers(side_by_side=False)` computes them in turn and gives the same bits, which the
tests check). P enters a model's key: the sum of part gradients differs from the whole batch's in rounding.

Each part's loss is scaled by its share of the batch's normaliser (its labelled words for a mean
cross-entropy, its words for a loss divided by the batch's word count), so the parts' losses add up to the
whole batch's loss.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection

import numpy as np
import torch

from unitrans.train.flat_grads import views

PartStep = Callable[[int, int, np.ndarray, float, int], tuple[float, int]]
"""(step, part, rows, share, words of the whole batch) → (the part's scaled loss, its subword tokens), after
its backward pass."""


def part_seed(seed: int, step: int, part: int) -> int:
    """Dropout seed of part `part` at `step`: part 0 keeps the one-process trainer's seed, so P = 1 is
    exactly the trainer as it always was; the other parts get independent streams."""
    if part == 0:
        return seed * 1_000_003 + step
    return int(np.random.SeedSequence([seed, step, part]).generate_state(1, dtype=np.uint32)[0])


def split_rows(batch: np.ndarray, parts: int) -> list[np.ndarray]:
    """`batch` cut into `parts` consecutive pieces of near-equal size (batches are length-sorted, so
    consecutive pieces have near-equal lengths too); never an empty piece when the batch has ≥ parts rows."""
    return [piece for piece in np.array_split(np.asarray(batch), parts) if len(piece)]


def shares(counts: Sequence[int]) -> list[float]:
    """Each part's share of the batch's normaliser (0 for all when the batch has none)."""
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def _serve(conn: Connection, other: Connection, run: PartStep, params: list[torch.Tensor],
           buffer: torch.Tensor, threads: int) -> None:  # fmt: skip
    """A helper's loop: compute the parts it is sent into its own shared gradient buffer."""
    other.close()  # so the main process's death reads as end-of-file here
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    torch.set_num_threads(threads)
    for p, view in zip(params, views(buffer, params), strict=True):
        p.grad = view
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            os._exit(0)
        if message is None:
            os._exit(0)
        step, part, rows, share, words = message
        buffer.zero_()
        try:
            conn.send(("ok", run(step, part, rows, share, words)))
        except BaseException as exc:  # reported to the main process, which raises it
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
            os._exit(1)


class PartWorkers:
    """Runs the parts of every step: part 0 here, part p in helper p (forked on `start`).

    `params` are the trainable parameters, whose `.grad` views live in `grads` (the trainer's flat
    buffer); their storage moves to shared memory so the helpers see every optimizer step.
    """

    def __init__(self, run: PartStep, params: list[torch.Tensor], grads: torch.Tensor, parts: int,
                 side_by_side: bool = True) -> None:  # fmt: skip
        self.run, self.params, self.grads = run, params, grads
        # One thread a part, here too: a forked child must not start an OpenMP team (GNU OpenMP
        # deadlocks), and the numbers then depend on the number of parts alone.
        self.parts, self.threads, self.side_by_side = parts, 1, side_by_side
        self.buffers = [torch.zeros_like(grads) for _ in range(parts - 1)]
        self.conns: list[Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []

    def __enter__(self) -> PartWorkers:
        if self.side_by_side:
            context = multiprocessing.get_context("fork")
            for p in self.params:
                p.data.share_memory_()
            for buffer in self.buffers:
                buffer.share_memory_()
                here, there = context.Pipe()
                proc = context.Process(
                    target=_serve, args=(there, here, self.run, self.params, buffer, self.threads),
                    daemon=True, name="unitrans-part",
                )  # fmt: skip
                proc.start()
                there.close()
                self.conns.append(here)
                self.procs.append(proc)
        return self

    def __exit__(self, *exc: object) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(None)
            conn.close()
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self.conns, self.procs = [], []

    def step(
        self, step: int, rows: Sequence[np.ndarray], part_shares: Sequence[float], words: int
    ) -> tuple[float, int]:
        """Backward passes of all parts of one step; on return `grads` holds g_0 + g_1 + … (in that order).
        Returns the summed loss and subword tokens."""
        if len(rows) == 1:
            return self.run(step, 0, rows[0], part_shares[0], words)
        if self.side_by_side:
            for conn, part in zip(self.conns, range(1, len(rows)), strict=False):
                conn.send((step, part, rows[part], part_shares[part], words))
            loss, tokens = self.run(step, 0, rows[0], part_shares[0], words)
            for conn, buffer in zip(self.conns[: len(rows) - 1], self.buffers, strict=False):
                status, value = conn.recv()
                if status != "ok":
                    raise RuntimeError(f"a batch part's process failed at step {step}: {value}")
                self.grads.add_(buffer)
                loss, tokens = loss + value[0], tokens + value[1]
            return loss, tokens
        loss, tokens = self.run(step, 0, rows[0], part_shares[0], words)
        own = [p.grad for p in self.params]
        try:
            for part, buffer in zip(range(1, len(rows)), self.buffers, strict=False):
                for p, view in zip(self.params, views(buffer, self.params), strict=True):
                    p.grad = view
                buffer.zero_()
                value = self.run(step, part, rows[part], part_shares[part], words)
                loss, tokens = loss + value[0], tokens + value[1]
        finally:
            for p, g in zip(self.params, own, strict=True):
                p.grad = g
        for buffer in self.buffers[: len(rows) - 1]:
            self.grads.add_(buffer)
        return loss, tokens
