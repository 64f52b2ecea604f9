"""`--set student_init=src|trans|teach`: the student starts from a teacher's weights instead of the
pretrained encoder. Its key names the teacher, the default's keys are unchanged, and the graph runs the
teacher first even when the variant's own teachers do not include it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unitrans.errors import UnitransError
from unitrans.model.runtime import torch_threads
from unitrans.pipeline.config import make_config
from unitrans.pipeline.runner import run_pipeline
from unitrans.pipeline.stages import read_probs

FIXTURES = Path(__file__).parent / "fixtures" / "pipeline"
TINY = {"epochs": 3, "teach_epochs": 2, "student_epochs": 2, "batch_size": 2, "max_length": 32,
        "freeze_layers": 1, "teacher_lr": 2e-2, "student_lr": 2e-2, "workers": 1}  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(encoder: Path, out: Path, cache: Path, **changes):
    values = {"targets": ("es",), "data_dir": FIXTURES, "encoder": str(encoder), "out_dir": out,
              "cache_dir": cache, "variants": ("src", "teach", "unitrans"), **TINY, **changes}  # fmt: skip
    return make_config("paper", **values)


def _record(result, label: str):
    return next(r for r in result.records if r.label == label)


def _test_probs(result, row: str) -> list[np.ndarray]:
    return read_probs(_record(result, f"es: {row} (seed 42) on test"))


def test_bad_student_init_is_one_line():
    with pytest.raises(UnitransError, match="student_init among pretrained, src, trans, teach"):
        make_config("paper", targets=("es",), student_init="mbert")


def test_student_from_teach_reuses_the_teachers_and_starts_from_teach(tiny_encoder_dir, tmp_path):
    cache = tmp_path / "cache"
    plain = run_pipeline(_config(tiny_encoder_dir, tmp_path / "a", cache), progress=False)
    # a learning rate of ~0 leaves the student where it started: Θteach's predictions, to float precision
    frozen = run_pipeline(
        _config(tiny_encoder_dir, tmp_path / "b", cache, student_init="teach", student_lr=1e-12),
        progress=False,
    )
    teach = _record(frozen, "es: train teach (seed 42)")
    student = _record(frozen, "es: student unitrans (seed 42)")
    assert not student.cached and teach.cached  # only the student and what follows it ran again
    assert student.key != _record(plain, "es: student unitrans (seed 42)").key
    manifest = (student.folder / "manifest.json").read_text()
    assert teach.key in manifest
    for got, want in zip(_test_probs(frozen, "unitrans"), _test_probs(frozen, "teach"), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4)
    said = "started from the weights of its `teach` teacher"
    assert said in (frozen.exports["es"]["unitrans"] / "README.md").read_text()  # the card says so
    assert "started from the weights" not in (plain.exports["es"]["unitrans"] / "README.md").read_text()
    # from the pretrained encoder the same ~0 learning rate leaves a model that is not Θteach
    scratch = run_pipeline(_config(tiny_encoder_dir, tmp_path / "c", cache, student_lr=1e-12), progress=False)
    diff = max(
        float(np.abs(g - w).max())
        for g, w in zip(_test_probs(scratch, "unitrans"), _test_probs(scratch, "teach"), strict=True)
    )
    assert diff > 1e-2


def test_graph_trains_the_init_teacher_a_variant_does_not_use(tiny_encoder_dir, tmp_path):
    """teacher-trans learns from Θtrans alone; with student_init=src the graph must also train Θsrc and
    start the student after it, and two workers must give what one gives."""
    cache = tmp_path / "cache"
    changes = {"variants": ("teacher-trans",), "student_init": "src"}
    one = run_pipeline(_config(tiny_encoder_dir, tmp_path / "one", cache, **changes), progress=False)
    assert "train src (seed 42)" in [r.label for r in one.records]
    two = run_pipeline(
        _config(tiny_encoder_dir, tmp_path / "two", tmp_path / "cache2", workers=2, **changes),
        progress=False,
    )
    assert two.results["es"] == one.results["es"]
    assert not any(r.cached for r in two.records)


def test_student_threads_all_runs_the_student_alone_and_keys_its_threads(tiny_encoder_dir, tmp_path):
    """`student_threads=all`: the student's key records its thread count (this process's: 1 here); two
    workers give what one gives; a shared student keeps the key it had before these settings existed."""
    cache = tmp_path / "cache"
    plain = run_pipeline(_config(tiny_encoder_dir, tmp_path / "a", cache, student_threads="shared"),
                         progress=False)  # fmt: skip
    changes = {"student_threads": "all", "variants": ("src", "unitrans")}
    one = run_pipeline(_config(tiny_encoder_dir, tmp_path / "b", cache, **changes), progress=False)
    two = run_pipeline(
        _config(tiny_encoder_dir, tmp_path / "c", tmp_path / "cache2", workers=2, **changes), progress=False
    )
    label = "es: student unitrans (seed 42)"
    manifest = json.loads((_record(one, label).folder / "manifest.json").read_text())
    assert manifest["settings"]["threads"] == torch.get_num_threads() == 1
    plain_manifest = json.loads((_record(plain, label).folder / "manifest.json").read_text())
    assert "threads" not in plain_manifest["settings"]
    assert _record(one, label).key != _record(plain, label).key
    assert two.results["es"]["unitrans"] == one.results["es"]["unitrans"]
    with pytest.raises(UnitransError, match="student_threads among shared, all, split"):
        make_config("paper", targets=("es",), student_threads="2")


def test_torch_threads_sets_and_restores():
    before = torch.get_num_threads()
    with torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before
    with torch_threads(0):  # 0 leaves them as they are
        assert torch.get_num_threads() == before
