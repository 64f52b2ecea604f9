"""`translate_sentences`: the lexicon's target word vectors from a fixed sample of the unlabelled text
while the teachers and the student see all of it. The sample is the one `max_target_sentences` of that
size takes, so such a run reuses the smaller run's translation and teachers; only what reads D_T re-runs."""

from __future__ import annotations

import pytest

from test_student_init import FIXTURES, _config, _record
from unitrans.errors import UnitransError
from unitrans.pipeline import stages
from unitrans.pipeline.config import make_config
from unitrans.pipeline.runner import run_pipeline


def test_the_lexicon_sample_is_the_same_as_a_smaller_d_t():
    small = make_config("paper", targets=("es",), data_dir=FIXTURES, max_target_sentences=4)
    text, lexicon_text = stages.read_target_text(small, "es")
    assert lexicon_text is text and len(text.sentences) == 4
    whole = make_config("paper", targets=("es",), data_dir=FIXTURES, translate_sentences=4)
    all_text, sample = stages.read_target_text(whole, "es")
    assert len(all_text.sentences) > 4 and sample.key == text.key and sample.sentences == text.sentences
    with pytest.raises(UnitransError, match="translate_sentences ≥ 0"):
        make_config("paper", targets=("es",), translate_sentences=-1)


def test_a_run_on_all_of_d_t_reuses_the_sampled_translation_and_teachers(tiny_encoder_dir, tmp_path):
    cache = tmp_path / "cache"
    small = run_pipeline(
        _config(tiny_encoder_dir, tmp_path / "a", cache, max_target_sentences=4), progress=False
    )
    whole = run_pipeline(
        _config(tiny_encoder_dir, tmp_path / "b", cache, translate_sentences=4), progress=False
    )
    for label in ("translate en→es", "es: train teach (seed 42)"):
        assert _record(whole, label).cached, label
    for label in ("es: teach (seed 42) on D_T", "es: student unitrans (seed 42)"):
        assert not _record(whole, label).cached, label
    assert _record(whole, "es: student unitrans (seed 42)").metrics["sentences"] > 4
    assert _record(small, "es: student unitrans (seed 42)").metrics["sentences"] == 4
    card = (whole.exports["es"]["unitrans"] / "README.md").read_text()
    assert "its lexicon's target word vectors from 4 of its sentences" in card
    assert "lexicon's target word vectors" not in (small.exports["es"]["unitrans"] / "README.md").read_text()
