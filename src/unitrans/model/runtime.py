"""Per-call choice of device and precision (no global device state).

bf16 is used only where the hardware runs it natively: a bf16 matmul peaked at ~3x fp32 on the project's
first CPU (AVX-512 BF16) and at ~8x on its AMX CPU; on CPUs without either bf16 is emulated and slower,
so "auto" means: a CUDA device that supports bf16, or a CPU whose flags list avx512_bf16 or amx_bf16.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import resource
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch

from unitrans.errors import UnitransError

KNOWN_DEVICES = ("cpu", "cuda", "mps")
T = TypeVar("T")


def pick_device(name: str | None = None) -> torch.device:
    """The device `name` (None: cuda if any, else cpu), checked to exist on this machine.

    Called before any work, so `--device foo` or `--device cuda` on a machine without a GPU is one line
    at once instead of a torch traceback after the data and the model were loaded.
    """
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(str(name).strip())
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in KNOWN_DEVICES:
        raise UnitransError(f"unknown device {name!r}; use one of cpu, cuda, cuda:N, mps")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UnitransError(f"device {name!r}: CUDA is not available on this machine; use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UnitransError(f"device {name!r}: this machine has {count} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UnitransError(f"device {name!r}: MPS is not available on this machine; use --device cpu")
    return device


@functools.cache
def cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return ("avx512_bf16" in flags or "amx_bf16" in flags) and bool(
        torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


def cpu_kernel_fingerprint() -> str:
    """A short hash of what this process's CPU matmul kernels compute on a fixed input, bf16 and fp32.

    The instruction-set names do not say which kernels run: an AMX CPU and an AVX-512 BF16 CPU both report
    "AVX512" and native bf16, and oneDNN (or `ONEDNN_MAX_CPU_ISA`) picks AMX tiles on the first, whose
    bf16 products round differently (seen on the development CPUs). Anything reused only where it would
    come out the same to the bit (`model.shared_states`) keys on this."""
    return _kernel_fingerprint(torch.get_num_threads())


@functools.cache
def _kernel_fingerprint(threads: int) -> str:
    import hashlib

    g = torch.Generator().manual_seed(0)
    a = torch.randn(64, 384, generator=g)
    w = torch.randn(384, 384, generator=g)
    h = hashlib.sha256()
    for dtype in (torch.bfloat16, torch.float32):
        with torch.no_grad():
            y = torch.nn.functional.linear(a.to(dtype), w.to(dtype))
        h.update(y.float().numpy().tobytes())
    return h.hexdigest()[:16]


def use_bf16(device: torch.device, requested: bool | None) -> bool:
    """Resolve the bf16 setting: an explicit True/False wins, None means "where native"."""
    if requested is not None:
        return requested
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


def describe_compute(device: torch.device) -> str:
    """One line for the start of a run: where it computes and in what precision, so that a user on a CPU
    without native bf16 knows why the same preset takes several times longer than the figures we publish."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return f"{device} ({name}), " + ("bf16 autocast" if use_bf16(device, None) else "fp32")
    if device.type != "cpu":
        return f"{device}, fp32"
    if use_bf16(device, None):
        return "cpu, bf16 autocast (native on this CPU)"
    return (
        "cpu, fp32: this CPU has no native bf16 (AVX-512 BF16 or AMX), so training and "
        "prediction take several times longer than on one that has it"
    )


def matmul_gflops(bf16: bool, repeats: int = 10) -> float:
    """One thread's GFLOP/s on an encoder-sized product (512 × 384 @ 384 × 1536) in the precision a run
    uses: what `unitrans run --plan` scales its reference stage times by, since training and prediction
    spend most of their time in such products (benchmarks/README.md, "How close prediction runs to this
    CPU's fp32 matmul speed"). One thread, as each worker has; best of `repeats`, so a moment of load from
    other jobs does not count. Takes well under a second."""
    dtype = torch.bfloat16 if bf16 else torch.float32
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(0)
        a = torch.randn(512, 384, generator=g).to(dtype)
        b = torch.randn(384, 1536, generator=g).to(dtype)
        torch.mm(a, b)  # warm-up: first-call kernel selection
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - started)
    finally:
        torch.set_num_threads(threads)
    return 2 * 512 * 384 * 1536 / max(best, 1e-9) / 1e9


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads set to `threads` for the block (0: left as they are), then restored: a
    stage that runs alone may use the threads its worker was started without."""
    before = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fork_rng(device: torch.device) -> contextlib.AbstractContextManager:
    """Seed-local RNG: dropout seeded per step without touching the caller's random state."""
    devices = [device.index or 0] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


def peak_memory_mib() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


@contextlib.contextmanager
def quiet_transformers():
    """Hide transformers warnings that are expected here and would only alarm users: the "LOAD REPORT"
    for a head that is new by design (classifier MISSING, pooler UNEXPECTED) and "Token indices sequence
    length is longer than 512" (long sentences are windowed after tokenization), and the "Loading
    weights" / "Writing model shards" bars that every load and save would print between a run's stage
    lines. Restores the level and the bars."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def forked_map(work: Callable[[int], T], parts: int) -> list[T]:
    """[work(0), …, work(parts - 1)]: part 0 here, the others side by side in forked processes, every
    part on one thread (GNU OpenMP deadlocks in a forked child that starts a team of threads, and torch
    gives a forked child one thread for that reason). For work such as prediction: on a CPU, P
    one-thread processes outrun one process with P threads (benchmarks/README.md, "Parts of a batch in
    processes"). A failing part is a RuntimeError here.
    """
    if parts <= 1:
        return [work(0)]
    threads = 1
    context = multiprocessing.get_context("fork")
    conns, procs = [], []
    for part in range(1, parts):
        here, there = context.Pipe(duplex=False)
        proc = context.Process(target=_forked_part, args=(work, part, threads, there, here), daemon=True)
        proc.start()
        there.close()
        conns.append(here)
        procs.append(proc)
    try:
        with torch_threads(threads):
            results = [work(0)]
        for part, conn in enumerate(conns, start=1):
            try:
                status, value = conn.recv()
            except EOFError:
                status, value = "error", "the process ended without a result"
            if status != "ok":
                raise RuntimeError(f"part {part} of {parts} failed: {value}")
            results.append(value)
        return results
    finally:
        for conn in conns:
            conn.close()
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()


def _forked_part(work: Callable[[int], Any], part: int, threads: int, conn: Any, other: Any) -> None:
    other.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    torch.set_num_threads(threads)
    try:
        conn.send(("ok", work(part)))
    except BaseException as exc:  # reported to the parent, which raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    conn.close()
