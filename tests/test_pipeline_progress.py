"""What a run tells the user while it works: one line when a stage starts, one when it ends."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from unitrans.pipeline import parallel
from unitrans.pipeline.config import make_config
from unitrans.pipeline.runner import run_pipeline
from unitrans.pipeline.stages import duration

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
    assert done[-1].endswith("into the run)") and f"({len(done)} stages run so far" in done[-1]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="unitrans"):
        run_pipeline(config, progress=False)
    again = [r.getMessage() for r in caplog.records if r.name.startswith("unitrans.pipeline.stages")]
    assert again and all(line.endswith("cached, skipped") for line in again)


@pytest.mark.parametrize("configured", [True, False])
def test_workers_log_like_the_main_process(monkeypatch, configured):
    root = logging.getLogger()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s", datefmt="%H:%M"))
    monkeypatch.setattr(root, "handlers", [handler] if configured else [])
    monkeypatch.setattr(root, "level", logging.INFO)
    assert parallel._log_setup() == (
        (logging.INFO, "%(levelname)s %(message)s", "%H:%M") if configured else None
    )
