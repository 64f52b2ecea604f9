"""Resuming gives exactly the numbers of an uninterrupted run, and worker processes never outlive or
silently lose their parent's run. Tiny encoder, hand-written fixtures, two worker processes."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from unitrans.errors import UnitransError
from unitrans.pipeline.cache import StageCache, StageRecord
from unitrans.pipeline.config import make_config
from unitrans.pipeline.parallel import GraphTask, NotCached, StagePool
from unitrans.pipeline.runner import RunResult, run_pipeline
from unitrans.pipeline.stages import StageContext

FIXTURES = Path(__file__).parent / "fixtures" / "pipeline"
TINY = {"epochs": 6, "teach_epochs": 4, "student_epochs": 10, "batch_size": 2, "max_length": 32,
        "freeze_layers": 1, "ensemble": 1, "teacher_lr": 2e-2, "student_lr": 2e-2, "workers": 2}  # fmt: skip
VARIANTS = ("src", "unitrans")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def two_torch_threads():
    """The main process has more threads than each worker (2 // 2 workers = 1): a stage trained in the
    main process would give other weights, which is what the resume test must catch."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _config(encoder: Path, out: Path, **changes):
    values = {"targets": ("es",), "data_dir": FIXTURES, "encoder": str(encoder), "out_dir": out,
              "variants": VARIANTS, **TINY, **changes}  # fmt: skip
    return make_config("paper", **values)


@pytest.fixture(scope="module")
def uninterrupted(tiny_encoder_dir, tmp_path_factory) -> RunResult:
    return run_pipeline(_config(tiny_encoder_dir, tmp_path_factory.mktemp("whole")), progress=False)


def _stage_files(result: RunResult) -> dict[str, Path]:
    """Every stage folder of a run by key, ready to compare across caches."""
    return {r.key: r.folder for r in result.records}


def _assert_same_numbers(got: RunResult, want: RunResult) -> None:
    assert got.results == want.results
    assert [r["f1"] for r in got.runs["es"]["unitrans"]] == [r["f1"] for r in want.runs["es"]["unitrans"]]
    mine, theirs = _stage_files(got), _stage_files(want)
    assert mine.keys() == theirs.keys()
    for key, folder in theirs.items():
        manifest = json.loads((folder / "manifest.json").read_text())
        again = json.loads((mine[key] / "manifest.json").read_text())
        assert again["runtime"] == manifest["runtime"], manifest["label"]  # same thread count
        for rel in manifest["files"]:
            if rel.endswith(".safetensors"):  # weights: byte for byte
                assert (mine[key] / rel).read_bytes() == (folder / rel).read_bytes(), (manifest["label"], rel)
            elif rel.endswith(".npz"):
                with np.load(folder / rel) as a, np.load(mine[key] / rel) as b:
                    for name in a.files:
                        np.testing.assert_array_equal(a[name], b[name])


def test_resumed_run_equals_an_uninterrupted_one(uninterrupted, tiny_encoder_dir, tmp_path):
    config = _config(tiny_encoder_dir, tmp_path / "out")
    stop_at = ["translate en→es", "es: src (seed 42) on D_T", "es: student unitrans (seed 42)"]

    def kill_after(label: str):
        def hook(rec: StageRecord) -> None:
            if rec.label == label:
                raise KeyboardInterrupt(f"simulated kill after {label}")

        return hook

    for label in stop_at:
        with pytest.raises(KeyboardInterrupt):
            run_pipeline(config, progress=False, after_stage=kill_after(label))
        if label.startswith("translate"):
            # the state of a kill while Θsrc trained: the translation finished, Θsrc did not; the rerun
            # trains Θsrc alone, and must train it as the whole run did (in a worker, one thread)
            assert [m.parent.name for m in (config.cache_root / "model").glob("*/manifest.json")]
            shutil.rmtree(config.cache_root / "model")  # wave 1's only model: Θsrc
    resumed = run_pipeline(config, progress=False)
    ran = [r.label for r in resumed.records if not r.cached]
    assert ran and "train src (seed 42)" not in ran  # retrained by the second attempt, cached now
    _assert_same_numbers(resumed, uninterrupted)


def test_lone_uncached_stage_runs_like_the_others(uninterrupted, tiny_encoder_dir, tmp_path):
    """A deleted Θsrc, all else cached: it runs alone, in a worker, with the worker's thread count."""
    cache = tmp_path / "cache"
    shutil.copytree(uninterrupted.paths["json"].parent / "cache", cache)
    src = next(r for r in uninterrupted.records if r.label == "train src (seed 42)")
    shutil.rmtree(cache / src.folder.relative_to(uninterrupted.paths["json"].parent / "cache"))
    again = run_pipeline(_config(tiny_encoder_dir, tmp_path / "out", cache_dir=cache), progress=False)
    assert [r.label for r in again.records if not r.cached] == ["train src (seed 42)"]
    _assert_same_numbers(again, uninterrupted)


def _die(ctx: StageContext, *, label: str) -> StageRecord:
    if ctx.probe:  # the pool first asks whether the stage is cached
        raise NotCached(label)
    os.kill(os.getpid(), signal.SIGKILL)  # what the OOM killer does
    raise AssertionError("unreachable")


def _wait(ctx: StageContext, *, label: str) -> StageRecord:
    if ctx.probe:
        raise NotCached(label)
    time.sleep(30)
    raise AssertionError("the pool should have terminated this worker")


def test_worker_killed_by_the_os_is_one_line_naming_its_stage(tiny_encoder_dir, tmp_path):
    ctx = StageContext(StageCache(tmp_path / "cache"), _config(tiny_encoder_dir, tmp_path), progress=False)
    calls = [
        functools.partial(_wait, label="es: other stage"),
        functools.partial(_die, label="train src (seed 7)"),
    ]
    started = time.monotonic()
    with StagePool(ctx, 2) as pool, pytest.raises(UnitransError) as err:
        pool.run_graph([GraphTask((i,), (), lambda c=c: (c, lambda rec: None)) for i, c in enumerate(calls)])
    assert str(err.value) == "worker process for train src (seed 7) died (killed by the OS — out of memory?)"
    assert time.monotonic() - started < 25  # the other worker was stopped, not waited for


PARENT = textwrap.dedent(
    """
    import multiprocessing, sys, time
    from pathlib import Path
    from unitrans.pipeline.local_workers import start_workers

    if __name__ == "__main__":
        pool = start_workers(2, 1, Path(sys.argv[1]))
        for _ in range(2):
            pool.submit(time.sleep, 120)  # busy workers never read their (now dead) parent's queue
        print(" ".join(str(p.pid) for p in multiprocessing.active_children()), flush=True)
        time.sleep(120)
    """
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie waits for a reaper, it runs nothing


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_workers_die_with_their_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    argv = [sys.executable, str(script), str(tmp_path)]
    parent = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    workers: list[int] = []
    try:
        workers = [int(p) for p in parent.stdout.readline().split()]  # type: ignore[union-attr]
        assert len(workers) == 2 and all(_alive(p) for p in workers)
        parent.kill()  # SIGKILL: no cleanup code of the parent runs
        parent.wait()
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(p) for p in workers)
    finally:
        parent.kill()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _cli(out: Path, cache: Path, encoder: Path) -> list[str]:
    sets = [f"--set={k}={v}" for k, v in TINY.items()]
    return [sys.executable, "-m", "unitrans.cli", "run", "--target", "es", "--data-dir", str(FIXTURES),
            "--encoder", str(encoder), "--variants", *VARIANTS, "--out", str(out), "--cache-dir", str(cache),
            "--no-progress", *sets]  # fmt: skip


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs process groups and /proc")
def test_sigkilled_cli_run_resumes_to_the_same_numbers(tiny_encoder_dir, tmp_path):
    """The real thing: `kill -9` of the whole process group while the models train, then a rerun."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "2"}
    whole = subprocess.run(_cli(tmp_path / "a", tmp_path / "ca", tiny_encoder_dir), env=env,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert whole.returncode == 0, whole.stderr
    argv = _cli(tmp_path / "b", tmp_path / "cb", tiny_encoder_dir)
    run = subprocess.Popen(argv, env=env, start_new_session=True, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not list((tmp_path / "cb" / "translate").glob("*/manifest.json")):
            assert run.poll() is None and time.monotonic() < deadline, "the run ended before the kill"
            time.sleep(0.02)
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert not (tmp_path / "b" / "results.json").exists()
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    want = json.loads((tmp_path / "a" / "results.json").read_text())
    assert json.loads((tmp_path / "b" / "results.json").read_text()) == want
    weights = sorted((tmp_path / "ca").glob("*/*/model/delta.safetensors"))  # compact models
    assert len(weights) == 4  # Θsrc, Θtrans, Θteach, the student
    for path in weights:
        assert (tmp_path / "cb" / path.relative_to(tmp_path / "ca")).read_bytes() == path.read_bytes()


def test_stage_calls_are_named_before_they_run(tiny_encoder_dir, tmp_path):
    """The label a dead worker's message gives is the one the stage itself would have logged."""
    from unitrans.pipeline import stages

    config = _config(tiny_encoder_dir, tmp_path)
    bound = functools.partial(stages.train_model, data=None, seed=7, lr=0.1, epochs=1)
    train = functools.partial(bound, kind="teach", lang="de")
    assert stages.call_label(train, config) == stages.model_label("teach", 7, "de")
    assert stages.model_label("teach", 7, "de") == "de: train teach (seed 7)"
    src = functools.partial(bound, kind="src")
    assert stages.call_label(src, config) == "train src (seed 7)"  # Θsrc serves every target
    translate = functools.partial(stages.translate, source=None, target_text=None, lang="es")
    assert stages.call_label(translate, config) == "translate en→es"
    probs = functools.partial(stages.probabilities, model=None, data=None, label="es: src (seed 7) on test")
    assert stages.call_label(probs, config) == "es: src (seed 7) on test"
