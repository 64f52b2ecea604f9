"""Several GPUs on one machine: one local worker per GPU, each pinned to its own (no GPU needed here: the
device count is faked, and the pinning is what each spawned worker sees in CUDA_VISIBLE_DEVICES)."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import pytest
import torch

from unitrans.pipeline import local_workers
from unitrans.pipeline.local_workers import LocalWorkers, gpu_pins, start_workers
from unitrans.pipeline.parallel import resolve_workers


def test_each_worker_gets_the_next_gpu_and_nothing_is_pinned_below_two():
    assert gpu_pins(4, 4) == ["0", "1", "2", "3"]
    assert gpu_pins(3, 2) == ["0", "1", "0"]  # more workers than GPUs: they take turns
    assert gpu_pins(2, 4) == ["0", "1"]
    assert gpu_pins(2, 1) is None and gpu_pins(2, 0) is None and gpu_pins(1, 4) is None
    # the parent's own CUDA_VISIBLE_DEVICES names the physical GPUs its cuda:0, cuda:1 ... are
    assert gpu_pins(2, 2, "6,3") == ["6", "3"]
    assert gpu_pins(3, 2, " 6, 3 ") == ["6", "3", "6"]


def test_auto_workers_is_one_per_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert resolve_workers(0) == 4
    assert resolve_workers(3) == 3
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_workers(0) == 1


def _visible_gpu() -> tuple[int, str | None]:
    time.sleep(1.0)  # long enough that the second task goes to the other, idle worker
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES")


def test_spawned_workers_are_pinned_one_gpu_each(tmp_path):
    pool = start_workers(2, 1, tmp_path, gpus=["5", "7"])
    try:
        seen = dict(f.result() for f in [pool.submit(_visible_gpu) for _ in range(2)])
    finally:
        pool.shutdown()
    assert len(seen) == 2 and sorted(seen.values()) == ["5", "7"]


def test_local_workers_pin_when_the_machine_has_several_gpus(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    started = {}

    def fake_start(workers, threads, status_dir, gpus=None):
        started.update(workers=workers, gpus=gpus)
        return SimpleNamespace(submit=lambda *args: None, shutdown=lambda **kw: None)

    monkeypatch.setattr(local_workers, "start_workers", fake_start)
    ctx = SimpleNamespace(config=None, cache=SimpleNamespace(root=tmp_path, version="", verify="full"))
    ctx.progress = False
    workers = LocalWorkers(ctx, 3)  # type: ignore[arg-type]
    workers.submit(lambda c: None, "stage")  # type: ignore[arg-type]
    workers.close()
    assert started == {"workers": 3, "gpus": ["0", "1", "0"]}


@pytest.mark.parametrize("count", [0, 1])
def test_local_workers_do_not_pin_without_several_gpus(monkeypatch, tmp_path, count):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    started = {}
    monkeypatch.setattr(
        local_workers,
        "start_workers",
        lambda w, t, d, gpus=None: (
            started.update(gpus=gpus) or SimpleNamespace(submit=lambda *a: None, shutdown=lambda **kw: None)
        ),
    )
    ctx = SimpleNamespace(config=None, cache=SimpleNamespace(root=tmp_path, version="", verify="full"))
    ctx.progress = False
    workers = LocalWorkers(ctx, 2)  # type: ignore[arg-type]
    workers.submit(lambda c: None, "stage")  # type: ignore[arg-type]
    workers.close()
    assert started == {"gpus": None}
