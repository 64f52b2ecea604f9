"""executor=ray: the tiny pipeline on a local 2-CPU Ray cluster gives what the local workers give, and Ray
stays optional (not imported by unitrans, one line when missing)."""

from __future__ import annotations

import functools
import json
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from unitrans.cli import main
from unitrans.errors import UnitransError
from unitrans.model.predict import load_probs
from unitrans.pipeline.cache import StageCache, StageRecord
from unitrans.pipeline.config import make_config
from unitrans.pipeline.parallel import GraphTask, NotCached, StagePool
from unitrans.pipeline.runner import run_pipeline
from unitrans.pipeline.stages import StageContext

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "pipeline"
TINY = {"epochs": 6, "teach_epochs": 4, "student_epochs": 10, "batch_size": 2, "max_length": 32,
        "freeze_layers": 1, "teacher_lr": 2e-2, "student_lr": 2e-2, "workers": 2,
        "variants": ("src", "trans", "teach", "unitrans")}  # fmt: skip


def _config(encoder: Path, out: Path, **changes):
    values = {"targets": ("es",), "data_dir": FIXTURES, "encoder": str(encoder), "out_dir": out, **TINY}
    return make_config("paper", **{**values, **changes})


def _test_probs(out: Path) -> dict[str, list[np.ndarray]]:
    """Every probability file of the run's cache, by the label its manifest names."""
    found = {}
    for manifest in sorted((out / "cache" / "probs").glob("*/manifest.json")):
        label = json.loads(manifest.read_text())["label"]
        found[label] = load_probs(manifest.parent / "probs.npz")[0]
    return found


def test_ray_executor_gives_the_local_executors_results(tiny_encoder_dir, tmp_path, one_torch_thread):
    ray = pytest.importorskip("ray")
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must stay short
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20, _temp_dir=temp,
             logging_level=logging.WARNING)  # fmt: skip
    try:
        config = _config(tiny_encoder_dir, tmp_path / "ray", executor="ray")
        on_ray = run_pipeline(config, progress=False)
        _a_failing_stage_is_its_own_error(ray, config, tmp_path / "failing")
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    local = run_pipeline(_config(tiny_encoder_dir, tmp_path / "local"), progress=False)
    assert not any(r.cached for r in on_ray.records) and not any(r.cached for r in local.records)
    assert on_ray.results == local.results
    assert on_ray.results["es"]["unitrans"]["f1"] > 0  # the models learned something worth comparing
    for variant in TINY["variants"]:
        assert [r["f1"] for r in on_ray.runs["es"][variant]] == [r["f1"] for r in local.runs["es"][variant]]
    got, want = _test_probs(tmp_path / "ray"), _test_probs(tmp_path / "local")
    assert got.keys() == want.keys() and len(got) == 7  # 3 teachers on D_T, 4 variants on test
    for label in want:
        assert all(np.array_equal(a, b) for a, b in zip(got[label], want[label], strict=True)), label
    manifests = (tmp_path / "ray" / "cache" / "model").glob("*/manifest.json")
    assert {json.loads(m.read_text())["runtime"]["threads"] for m in manifests} == {1}
    # the executor is in no key: a Ray run over the local run's cache finds every stage there
    again = run_pipeline(
        _config(tiny_encoder_dir, tmp_path / "again", executor="ray", cache_dir=tmp_path / "local" / "cache"),
        progress=False,
    )
    assert all(r.cached for r in again.records) and again.results == local.results


def _fails(ctx: StageContext, *, label: str) -> StageRecord:
    if ctx.probe:  # the pool first asks whether the stage is cached
        raise NotCached(label)
    raise UnitransError(f"{label}: expected a good input")


def _a_failing_stage_is_its_own_error(ray, config, cache: Path) -> None:
    """A stage that raises in a Ray task raises the same one-line error in the run, not a RayTaskError."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    ctx = StageContext(StageCache(cache), config, progress=False)
    call = functools.partial(_fails, label="es: stage")
    with StagePool(ctx, 2, "ray") as pool, pytest.raises(UnitransError) as err:
        pool.run_graph([GraphTask(("x",), (), lambda: (call, lambda rec: None))])
    assert type(err.value) is UnitransError and str(err.value) == "es: stage: expected a good input"


class FakeRay:
    """Enough of the ray package to see what `RayStages` asks of it, with no cluster."""

    def __init__(self, cpus: float, gpus: float = 0) -> None:
        self.inits: list[dict] = []
        self.resources = {"CPU": cpus, "GPU": gpus}
        self.options: dict = {}
        self.shut = False

    def is_initialized(self) -> bool:
        return bool(self.inits)

    def init(self, **options) -> None:
        self.inits.append(options)

    def nodes(self) -> list[dict]:
        return [{"Alive": True, "Resources": self.resources}]

    def remote(self, fn):
        sent = SimpleNamespace(remote=lambda *args: SimpleNamespace(future=lambda: "future"))
        return SimpleNamespace(options=lambda **kw: self.options.update(kw) or sent)

    def shutdown(self) -> None:
        self.shut = True


def _stages(fake: FakeRay, monkeypatch, workers: int, address: str = ""):
    from unitrans.pipeline import ray_executor

    monkeypatch.setattr(ray_executor, "import_ray", lambda: fake)
    ctx = SimpleNamespace(
        config=None, cache=SimpleNamespace(root=None, version="", verify="full"), progress=False
    )
    return ray_executor.RayStages(ctx, workers, address)  # type: ignore[arg-type]


def test_ray_tasks_ask_for_the_local_thread_count_and_a_gpu_when_there_is_one(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    fake = FakeRay(cpus=16, gpus=2)
    stages = _stages(fake, monkeypatch, workers=4, address="ray://head:10001")
    assert stages.slots == 2  # 16 CPUs / 2 threads per stage, but 2 GPUs
    assert fake.inits == [{"include_dashboard": False, "logging_level": logging.WARNING,
                           "address": "ray://head:10001"}]  # fmt: skip
    assert stages.submit(lambda ctx: None, "shared") == "future"
    assert fake.options == {"num_cpus": 2, "num_gpus": 1}
    stages.close()
    assert fake.shut  # a connection it opened, it closes


def test_no_address_starts_a_local_cluster_and_a_stage_too_big_for_any_node_is_one_line(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    fake = FakeRay(cpus=2)
    with pytest.raises(UnitransError, match=r"each stage uses 4 threads .* the largest Ray node has 2 CPUs"):
        _ = _stages(fake, monkeypatch, workers=2).slots
    assert "address" not in fake.inits[0] and fake.inits[0]["num_cpus"] >= 1


def test_a_caller_s_ray_connection_is_used_and_left_open(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    fake = FakeRay(cpus=2)
    fake.inits.append({"by": "caller"})
    stages = _stages(fake, monkeypatch, workers=2)
    assert stages.slots == 2 and stages.submit(lambda ctx: None, "shared") == "future"
    assert fake.options == {"num_cpus": 1, "num_gpus": 0}
    stages.close()
    assert fake.inits == [{"by": "caller"}] and not fake.shut


def test_missing_ray_is_one_line_and_exit_2(tiny_encoder_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    argv = ["run", "--target", "es", "--data-dir", str(FIXTURES), "--encoder", str(tiny_encoder_dir),
            "--out", str(tmp_path), "--set", "executor=ray", "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "executor=ray needs `pip install ray`" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_unknown_executor_is_one_line():
    with pytest.raises(UnitransError, match="expected executor among local, ray, found 'dask'"):
        make_config("paper", targets=("es",), executor="dask")


def test_importing_unitrans_does_not_import_ray():
    code = (
        "import sys, unitrans.cli, unitrans.pipeline.runner, unitrans.pipeline.parallel; "
        "assert 'ray' not in sys.modules, 'ray imported'"
    )
    env_path = str(ROOT / "src")
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr.decode()


def test_a_lone_stage_reserves_its_threads_up_to_a_node(monkeypatch):
    """`student_threads=all`: the stage sets its own threads; on Ray it reserves that many CPUs, at most one
    node's (more would never be scheduled); other stages keep the shared reservation."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    stages = _stages(FakeRay(cpus=4), monkeypatch, workers=2)
    assert stages.slots == 4
    sent: list[tuple[dict, int]] = []

    class Task:
        def __init__(self, options: dict | None = None) -> None:
            self.given = options or {}

        def options(self, **kw):
            return Task(kw)

        def remote(self, shared, *rest):
            sent.append((self.given, shared))
            return SimpleNamespace(future=lambda: "future")

    stages._remote = (Task(), 1, None, ())
    assert stages.submit(lambda ctx: None, "shared") == "future"
    stages.submit(lambda ctx: None, "lone", 2)
    stages.submit(lambda ctx: None, "too big", 16)
    assert sent == [({"num_cpus": 1, "num_gpus": 0}, 1), ({"num_cpus": 2, "num_gpus": 0}, 1),
                    ({"num_cpus": 4, "num_gpus": 0}, 1)]  # fmt: skip
