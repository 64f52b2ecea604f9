"""Batches in parts across forked processes (`TrainConfig.processes`, the pipeline's `student_threads=split`):
the parts' losses add up to the whole batch's, the numbers are the same whether the parts run side by side
or in turn, resume is exact, a failing part is reported, and keys change only when it is set."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch

from test_student_init import _config, _record
from test_train_supervised import TRAIN, Interrupt, config, dying_loss, weights
from unitrans.data.schemes import CONLL_LABELS
from unitrans.errors import UnitransError
from unitrans.pipeline.config import make_config
from unitrans.pipeline.runner import run_pipeline
from unitrans.train import parts
from unitrans.train.distill import DistillLoss
from unitrans.train.flat_grads import views
from unitrans.train.supervised import TrainConfig, cross_entropy_loss, train_tagger

UNLABELLED = [s.unlabelled() for s in TRAIN]


def _distill_targets() -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    soft = [rng.dirichlet(np.ones(len(CONLL_LABELS)), size=len(s)).astype(np.float32) for s in TRAIN]
    hard = [np.where(rng.random(len(s)) < 0.5, rng.integers(0, 9, len(s)), -100) for s in TRAIN]
    return hard, soft


def test_part_seeds_splits_and_shares():
    assert parts.part_seed(42, 7, 0) == 42 * 1_000_003 + 7  # part 0 is the one-process trainer's seed
    seeds = {parts.part_seed(42, 7, p) for p in range(4)} | {parts.part_seed(42, 8, 1)}
    assert len(seeds) == 5
    pieces = parts.split_rows(np.arange(7), 2)
    assert [p.tolist() for p in pieces] == [[0, 1, 2, 3], [4, 5, 6]]
    assert [p.tolist() for p in parts.split_rows(np.arange(1), 3)] == [[0]]  # never an empty part
    assert parts.shares([3, 1]) == [0.75, 0.25] and parts.shares([0, 0]) == [0.0, 0.0]


@pytest.mark.parametrize("per_word", [False, True])
def test_the_parts_losses_add_up_to_the_whole_batchs(per_word):
    """Each part's loss times its share is its piece of the whole batch's loss (so are the gradients)."""
    torch.manual_seed(0)
    logits = torch.randn(11, len(CONLL_LABELS))
    hard = torch.tensor([0, -100, 3, 3, -100, 1, 0, 0, -100, 2, 5])
    soft = torch.softmax(torch.randn(11, len(CONLL_LABELS)), -1)
    loss = DistillLoss(soft="kl") if per_word else cross_entropy_loss
    cuts = [slice(0, 4), slice(4, 11)]
    counts = [(c.stop - c.start) if per_word else int((hard[c] != -100).sum()) for c in cuts]
    total = sum(
        s * loss(logits[c], hard[c], soft[c]) for s, c in zip(parts.shares(counts), cuts, strict=True)
    )
    torch.testing.assert_close(total, loss(logits, hard, soft), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("processes", [2, 3])
@pytest.mark.parametrize("distil", [False, True])
def test_parts_side_by_side_give_the_bits_of_parts_in_turn(tiny_encoder_dir, tmp_path, processes, distil):
    hard, soft = _distill_targets()
    kwargs = dict(hard_labels=hard, soft_targets=soft, loss_fn=DistillLoss(soft="kl")) if distil else {}
    data = UNLABELLED if distil else TRAIN
    cfg = config(tiny_encoder_dir, processes=processes)
    forked = weights(train_tagger(data, tmp_path / "forked", cfg, progress=False, **kwargs))
    one = weights(train_tagger(data, tmp_path / "one", config(tiny_encoder_dir), progress=False, **kwargs))
    in_turn = weights(
        train_tagger(data, tmp_path / "in-turn", cfg, progress=False, side_by_side=False, **kwargs)
    )
    assert all(torch.equal(forked[n], in_turn[n]) for n in forked)
    assert not torch.equal(forked["classifier.weight"], one["classifier.weight"])  # other dropout draws


def test_an_interrupted_run_in_parts_resumes_to_the_same_weights(tiny_encoder_dir, tmp_path):
    cfg = config(tiny_encoder_dir, save_every=3, epochs=3, processes=2)
    full = weights(train_tagger(TRAIN, tmp_path / "full", cfg, progress=False))
    with pytest.raises(Interrupt):  # part 0's 8th call, in this process
        train_tagger(TRAIN, tmp_path / "cut", cfg, loss_fn=dying_loss(8), progress=False)
    resumed = weights(train_tagger(TRAIN, tmp_path / "cut", cfg, progress=False))
    assert all(torch.equal(full[n], resumed[n]) for n in full)


def test_a_failing_part_is_reported_and_its_process_ends():
    layer = torch.nn.Linear(3, 1)
    params = list(layer.parameters())
    grads = torch.zeros(sum(p.numel() for p in params))
    for p, view in zip(params, views(grads, params), strict=True):
        p.grad = view

    def run(step, part, rows, share, words):
        if part == 1 and step == 1:
            raise ValueError("bad part")
        layer(torch.ones(len(rows), 3)).sum().backward()
        return 1.0, len(rows)

    workers = parts.PartWorkers(run, params, grads, 2)
    with workers:
        assert workers.step(0, [np.arange(2), np.arange(2, 3)], [0.5, 0.5], 3) == (2.0, 3)
        torch.testing.assert_close(layer.bias.grad, torch.tensor([3.0]))  # 2 rows here + 1 in the helper
        with pytest.raises(RuntimeError, match="step 1: ValueError: bad part"):
            workers.step(1, [np.arange(2), np.arange(2, 3)], [0.5, 0.5], 3)
        procs = list(workers.procs)
    assert all(not p.is_alive() for p in procs)


def test_processes_is_validated_and_keys_models_only_when_set(tiny_encoder_dir, tmp_path):
    assert "processes" not in TrainConfig().results_key()  # models from before it existed keep their keys
    assert TrainConfig(processes=2).results_key()["processes"] == 2
    with pytest.raises(UnitransError, match=r"processes must be in \[1, 64\]"):
        TrainConfig(processes=0)

    def plain_loss(logits, hard, soft):
        return cross_entropy_loss(logits, hard, soft)

    with pytest.raises(UnitransError, match="declares divides_by"):
        train_tagger(TRAIN, tmp_path / "m", config(tiny_encoder_dir, processes=2), loss_fn=plain_loss,
                     progress=False)  # fmt: skip


def test_student_threads_split_is_the_paper_default_and_is_validated():
    assert make_config("paper", targets=("es",)).student_threads == "split"
    with pytest.raises(UnitransError, match="student_threads among shared, all, split"):
        make_config("paper", targets=("es",), student_threads="many")


def test_the_split_student_runs_in_parts_and_is_keyed_by_them(tiny_encoder_dir, tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the stage's threads decide its parts, whatever machine runs the test
    try:
        cache = tmp_path / "cache"
        label = "es: student unitrans (seed 42)"
        shared = run_pipeline(_config(tiny_encoder_dir, tmp_path / "a", cache, student_threads="shared"),
                              progress=False)  # fmt: skip
        split = run_pipeline(_config(tiny_encoder_dir, tmp_path / "b", cache), progress=False)  # the default
    finally:
        torch.set_num_threads(before)
    assert _record(split, "es: train teach (seed 42)").cached and not _record(split, label).cached
    settings = json.loads((_record(split, label).folder / "manifest.json").read_text())["settings"]
    assert settings["threads"] == 2 and settings["train"]["processes"] == 2
    plain = json.loads((_record(shared, label).folder / "manifest.json").read_text())["settings"]
    assert "threads" not in plain and "processes" not in plain["train"]


def test_a_split_student_in_a_workers_slot_gives_the_same_student(tiny_encoder_dir, tmp_path, monkeypatch):
    """The scheduler may run a split student in one worker's slot, its parts in turn (`alone=False`):
    same key, same test probabilities as the student that ran alone with its parts side by side."""
    from unitrans.pipeline import distillation, language
    from unitrans.pipeline.stages import read_probs

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        alone = run_pipeline(_config(tiny_encoder_dir, tmp_path / "a", tmp_path / "c1"), progress=False)
        in_a_slot = functools.partial(distillation.student, alone=False)
        monkeypatch.setattr(language.distillation, "student", in_a_slot)
        in_slot = run_pipeline(_config(tiny_encoder_dir, tmp_path / "b", tmp_path / "c2"), progress=False)
    finally:
        torch.set_num_threads(before)
    label = "es: student unitrans (seed 42)"
    assert _record(alone, label).key == _record(in_slot, label).key
    test = "es: unitrans (seed 42) on test"
    for x, y in zip(read_probs(_record(alone, test)), read_probs(_record(in_slot, test)), strict=True):
        assert np.array_equal(x, y)
