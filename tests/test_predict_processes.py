"""Prediction shared out among forked processes (`predict_probs(processes=…)`, `--processes` of `unitrans
predict` and `unitrans tag`): the same probabilities to the bit, parts in order, a failing part reported."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from test_train_supervised import TRAIN, config
from unitrans.cli import main
from unitrans.errors import UnitransError
from unitrans.model import runtime
from unitrans.model.predict import MIN_BATCHES_PER_PART, predict_probs, resolve_processes
from unitrans.train.supervised import train_tagger


@pytest.fixture(scope="module")
def model(tiny_encoder_dir, tmp_path_factory):
    return train_tagger(TRAIN, tmp_path_factory.mktemp("m") / "m", config(tiny_encoder_dir, epochs=1),
                        progress=False)  # fmt: skip


@pytest.mark.parametrize("processes", [2, 3, 50])
def test_processes_give_the_same_probabilities(model, processes, monkeypatch):
    calls = []
    monkeypatch.setattr(runtime, "forked_map", lambda work, parts: calls.append(parts) or [
        work(p) for p in range(parts)])  # fmt: skip
    one = predict_probs(model, TRAIN, progress=False, batch_size=2)
    many = predict_probs(model, TRAIN, progress=False, batch_size=2, processes=processes)
    assert len(many) == len(TRAIN) and all(np.array_equal(a, b) for a, b in zip(one, many, strict=True))
    batches = -(-len(TRAIN) // 2)  # one window per sentence, two per batch
    assert calls == [1, processes if batches >= MIN_BATCHES_PER_PART * processes else 1]


def test_processes_in_forked_processes_give_the_same_probabilities(model):
    one = predict_probs(model, TRAIN, progress=False, batch_size=1)
    many = predict_probs(model, TRAIN, progress=False, batch_size=1, processes=3)
    assert all(np.array_equal(a, b) for a, b in zip(one, many, strict=True))


def test_forked_map_keeps_part_order_and_reports_a_failing_part():
    assert runtime.forked_map(lambda part: (part, os.getpid()), 1)[0][0] == 0
    results = runtime.forked_map(lambda part: (part, os.getpid()), 3)
    assert [r[0] for r in results] == [0, 1, 2] and len({r[1] for r in results}) == 3
    assert results[0][1] == os.getpid()

    def work(part):
        if part == 2:
            raise ValueError("no")
        return part

    with pytest.raises(RuntimeError, match="part 2 of 3 failed: ValueError: no"):
        runtime.forked_map(work, 3)


def test_processes_option_resolves_and_checks():
    cpu = torch.device("cpu")
    assert resolve_processes(0, cpu) == torch.get_num_threads() and resolve_processes(3, cpu) == 3
    assert resolve_processes(4, torch.device("cuda")) == 1
    with pytest.raises(UnitransError, match="--processes must be 0"):
        resolve_processes(-2, cpu)


def test_predict_command_with_processes_writes_the_same_tags(model, tmp_path, capsys):
    text = tmp_path / "in.txt"
    text.write_text("\n".join(" ".join(s.words) for s in TRAIN) + "\n")
    outs = []
    for processes in ("1", "2"):
        out = tmp_path / f"out{processes}.conll"
        argv = ["predict", "--model", str(model), "--input", str(text), "--out", str(out)]
        assert main([*argv, "--processes", processes, "--batch-size", "2"]) == 0
        outs.append(out.read_text())
    assert outs[0] == outs[1] and outs[0].count("\n\n") == len(TRAIN)
    assert main(["predict", "--model", str(model), "--input", str(text), "--out", str(tmp_path / "x"),
                 "--processes", "-1"]) == 2  # fmt: skip
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("got -1")
