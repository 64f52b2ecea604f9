"""What a run tells the user while it works: one line with the run's stages, one when a stage starts, one
when it ends with the stages left and the time left."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from unitrans.model import runtime
from unitrans.pipeline import local_workers
from unitrans.pipeline.config import make_config
from unitrans.pipeline.eta import duration
from unitrans.pipeline.runner import run_pipeline

FIXTURES = Path(__file__).parent / "fixtures" / "pipeline"


def test_durations_read_well():
    assert duration(3.04) == "3.0s"
    assert duration(59.94) == "59.9s"
    assert duration(245) == "4m05s"
    assert duration(3725) == "1h02m"


def test_a_stage_that_runs_says_so_when_it_starts_and_ends(tiny_encoder_dir, tmp_path, caplog):
    torch.set_num_threads(1)
    config = make_config(
        "paper", targets=("es",), data_dir=FIXTURES, encoder=str(tiny_encoder_dir), out_dir=tmp_path,
        variants=("src",), epochs=1, batch_size=8, max_length=32, freeze_layers=1, workers=1,
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="unitrans"):
        run_pipeline(config, progress=False)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("unitrans.pipeline.stages")]
    started = [line for line in lines if line.endswith(": started")]
    done = [line for line in lines if ": done in " in line]
    assert started and len(started) == len(done)
    assert started[0] == "train src (seed 42): started"
    end = next(i for i, line in enumerate(lines) if line.startswith("train src (seed 42): done in "))
    assert lines.index(started[0]) < end
    assert done[-1].endswith("into the run; none left)") and f"({len(done)} stages run so far" in done[-1]
    assert done[0].endswith(f"; {len(done) - 1} left, ETA under a minute)")  # tiny stages
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="unitrans"):
        run_pipeline(config, progress=False)
    again = [r.getMessage() for r in caplog.records if r.name.startswith("unitrans.pipeline.stages")]
    assert again and all(line.endswith("cached, skipped") for line in again)
    said = [r.getMessage() for r in caplog.records if r.name == "unitrans.pipeline.runner"]
    assert sum(line.startswith("compute: ") for line in said) == 1  # where it computes, and in what precision


@pytest.mark.parametrize("native", [True, False])
def test_the_compute_line_says_why_a_cpu_without_native_bf16_is_slower(monkeypatch, native):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    line = runtime.describe_compute(torch.device("cpu"))
    if native:
        assert line == "cpu, bf16 autocast (native on this CPU)"
    else:
        assert line.startswith("cpu, fp32: this CPU has no native bf16 (AVX-512 BF16 or AMX)")
        assert "longer" in line


@pytest.mark.parametrize("configured", [True, False])
def test_workers_log_like_the_main_process(monkeypatch, configured):
    root = logging.getLogger()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s", datefmt="%H:%M"))
    monkeypatch.setattr(root, "handlers", [handler] if configured else [])
    monkeypatch.setattr(root, "level", logging.INFO)
    assert local_workers._log_setup() == (
        (logging.INFO, "%(levelname)s %(message)s", "%H:%M") if configured else None
    )


def _runner_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "unitrans.pipeline.runner"]


def test_the_first_line_counts_stages_cached_and_to_run(tiny_encoder_dir, tmp_path, caplog):
    torch.set_num_threads(1)
    values = {"targets": ("es",), "data_dir": FIXTURES, "encoder": str(tiny_encoder_dir), "epochs": 1,
              "batch_size": 8, "max_length": 32, "freeze_layers": 1, "workers": 1,
              "cache_dir": tmp_path / "cache"}  # fmt: skip
    src = make_config("paper", variants=("src",), out_dir=tmp_path / "a", **values)
    with caplog.at_level(logging.INFO, logger="unitrans"):
        run_pipeline(src, progress=False)
    # nothing cached: the reference rates at this CPU's matmul speed give an estimate at once
    assert (
        "run: 3 stages, 0 cached, 3 to run (1 worker); under a minute left, from this CPU's matmul speed "
        "(stage times will refine it)"
    ) in _runner_lines(caplog)
    caplog.clear()
    both = make_config("paper", variants=("src", "trans"), out_dir=tmp_path / "b", **values)
    with caplog.at_level(logging.INFO, logger="unitrans"):
        run_pipeline(both, progress=False)
    first = next(line for line in _runner_lines(caplog) if line.startswith("run: "))
    # Θsrc, its test probabilities and evaluation are cached; translation, Θtrans, its test probabilities
    # and evaluation run; the cached stages' recorded times are a basis for an estimate at once
    assert first == (
        "run: 7 stages, 3 cached, 4 to run (1 worker); under a minute left, "
        "from stage times an earlier run recorded in this cache"
    )
    lines = [r.getMessage() for r in caplog.records if r.name == "unitrans.pipeline.stages"]
    assert sum(line.endswith(": cached, skipped") for line in lines) == 3
    done = [line for line in lines if ": done in " in line]
    assert [line.rsplit("; ", 1)[1] for line in done] == [
        "3 left, ETA under a minute)", "2 left, ETA under a minute)", "1 left, ETA under a minute)",
        "none left)",
    ]  # fmt: skip
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="unitrans"):
        run_pipeline(both, progress=False)
    assert "run: 7 stages, all cached" in _runner_lines(caplog)


def test_the_pool_announces_what_it_hands_to_workers(monkeypatch):
    """Workers log no start lines: the main process announces each stage when it hands it over."""
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    from unitrans.pipeline.parallel import GraphTask, StagePool

    monkeypatch.setattr(StagePool, "_cached", lambda self, call: "cached" if call.__name__ == "b" else None)

    class Threads:  # an executor (see parallel.Executor) running calls on threads
        slots, pool = 2, ThreadPoolExecutor(2)

        def submit(self, call, label, threads=0):
            return self.pool.submit(call, None)

        def result(self, future, unfinished):
            return future.result()

        def close(self):
            self.pool.shutdown()

    monkeypatch.setattr("unitrans.pipeline.stages.call_label", lambda call, config: f"stage {call.__name__}")
    ctx = SimpleNamespace(adopt=lambda rec: rec, cache=SimpleNamespace(root=None, version="", verify="full"),
                          config=None, progress=False)  # fmt: skip

    def task(name: str, needs: tuple = ()) -> GraphTask:
        def call(ctx: object) -> str:
            return name

        call.__name__ = name
        return GraphTask((name,), needs, lambda: (call, lambda rec: None))

    announced: list[str] = []
    with StagePool(ctx, 2, Threads(), on_start=announced.append) as pool:  # type: ignore[arg-type]
        pool.run_graph([task("a"), task("b"), task("c", (("a",), ("b",)))])
    assert announced == ["stage a", "stage c"]  # b came from the cache


def test_plan_lists_every_stage_and_writes_nothing(tiny_encoder_dir, tmp_path, capsys, monkeypatch):
    """`unitrans run --plan`: before a run every stage is to run, nothing is created; after it the same
    stages are all cached, with the run's own labels."""
    from unitrans.cli import main
    from unitrans.model import runtime
    from unitrans.pipeline.runner import plan_run

    torch.set_num_threads(1)
    monkeypatch.setattr(runtime, "matmul_gflops", lambda bf16: 1000.0)  # faster than the reference
    out, cache = tmp_path / "out", tmp_path / "cache"
    values = {"targets": ("es",), "data_dir": FIXTURES, "encoder": str(tiny_encoder_dir), "out_dir": out,
              "cache_dir": cache, "variants": ("src", "trans"), "epochs": 1, "batch_size": 8,
              "max_length": 32, "freeze_layers": 1, "workers": 1}  # fmt: skip
    config = make_config("paper", **values)
    before = plan_run(config)
    assert before[0].startswith("plan: 7 stages, 0 cached, 7 to run (1 worker); under a minute")
    assert "at the reference speed" in before[0]
    assert all(line.startswith("  to run  ") for line in before[1:]) and len(before) == 8
    assert not out.exists() and not cache.exists()

    result = run_pipeline(config, progress=False)
    after = plan_run(config)
    assert after[0] == "plan: 7 stages, 7 cached, 0 to run (1 worker)"
    labels = [line.removeprefix("  cached  ").strip() for line in after[1:]]
    assert sorted(labels) == sorted(r.label for r in result.records)

    args = ["run", "--target", "es", "--data-dir", str(FIXTURES), "--encoder", str(tiny_encoder_dir),
            "--out", str(out), "--cache-dir", str(cache), "--variants", "src", "trans", "--set", "epochs=1",
            "--set", "batch_size=8", "--set", "max_length=32", "--set", "freeze_layers=1",
            "--set", "workers=1", "--plan"]  # fmt: skip
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines() == after


def test_plan_estimates_from_earlier_runs_or_the_reference():
    from unitrans.pipeline.eta import PlannedStage, plan_lines

    done = PlannedStage("a", "train a", "model", 1000.0, (), True, 60.0)
    todo = PlannedStage("b", "train b", "model", 2000.0, ("a",), False)
    probs = PlannedStage("c", "b on test", "probs", 500.0, ("b",), False)
    lines = plan_lines([done, todo, probs], workers=2)
    # model: 60 s / 1000 words measured; probs: the reference rate scaled by the same machine speed
    scale = 60.0 / (1000 * 1.84e-3)
    assert lines[0].startswith("plan: 3 stages, 1 cached, 2 to run (2 workers); about 2 min from stage times")
    assert lines[1].split() == ["cached", "train", "a"]
    assert lines[2].split() == ["to", "run", "train", "b", "2m00s"]
    assert lines[3].split()[-1] == f"{500 * 0.44e-3 * scale:.1f}s"
    fresh = plan_lines([todo], workers=1)
    assert fresh[0].endswith(
        "at the reference speed (the quick preset's stage times on a 2-core CPU, two workers)"
    )
    assert fresh[1].split()[-1] == "3.7s"  # 2000 words x 1.84e-3 s


def test_plan_scales_the_reference_by_this_machines_matmul_speed():
    """With no stage times in the cache, a CPU whose one-thread matmuls are k times slower than the
    reference's gets every estimate k times longer and the line says so; a faster one keeps the
    reference (never shorter); earlier stage times win over the probe."""
    from unitrans.pipeline.eta import REFERENCE_MATMUL_GFLOPS, PlannedStage, machine_scale, plan_lines

    assert machine_scale(None) == 1.0 and machine_scale(0.0) == 1.0
    assert machine_scale(REFERENCE_MATMUL_GFLOPS / 2.5) == 2.5
    assert machine_scale(REFERENCE_MATMUL_GFLOPS * 4) == 1.0
    todo = PlannedStage("b", "train b", "model", 20000.0, (), False)
    plain = plan_lines([todo], workers=1)
    slow = plan_lines([todo], workers=1, matmul_gflops=REFERENCE_MATMUL_GFLOPS / 2.5)
    assert plain[1].split()[-1] == "36.8s"  # 20000 words x 1.84e-3 s
    assert slow[1].split()[-1] == "1m32s"  # x 2.5
    assert slow[0].startswith(
        "plan: 1 stage, 0 cached, 1 to run (1 worker); about 2 min at 2.5x the reference"
    )
    assert f"run {REFERENCE_MATMUL_GFLOPS / 2.5:.0f} GFLOP/s" in slow[0]
    assert plan_lines([todo], workers=1, matmul_gflops=REFERENCE_MATMUL_GFLOPS * 4) == plain
    done = PlannedStage("a", "train a", "model", 1000.0, (), True, 60.0)
    assert plan_lines([done, todo], 1, matmul_gflops=1.0) == plan_lines([done, todo], 1)


def test_the_matmul_probe_is_a_speed_and_leaves_the_threads_as_they_were():
    from unitrans.model.runtime import matmul_gflops

    torch.set_num_threads(2)
    try:
        speed = matmul_gflops(False, repeats=2)
        assert 0.01 < speed < 1e6 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
