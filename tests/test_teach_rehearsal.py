"""`teach_data=trans+source`: Θteach fine-tunes Θsrc on D_trans and the source data together (rehearsal), its
key alone changes (Θsrc and the translation are reused), and the model card says so."""

from __future__ import annotations

import json

import pytest

from test_student_init import _config, _record
from unitrans.errors import UnitransError
from unitrans.pipeline.config import make_config
from unitrans.pipeline.runner import run_pipeline
from unitrans.pipeline.settings import parse_settings

TEACH = "es: train teach (seed 42)"


def _manifest(result, label: str) -> dict:
    return json.loads((_record(result, label).folder / "manifest.json").read_text())


def test_rehearsal_keys_teach_alone_and_trains_on_both_corpora(tiny_encoder_dir, tmp_path):
    cache = tmp_path / "cache"
    plain = run_pipeline(_config(tiny_encoder_dir, tmp_path / "a", cache), progress=False)
    mixed = run_pipeline(
        _config(tiny_encoder_dir, tmp_path / "b", cache, teach_data="trans+source"), progress=False
    )
    assert _record(mixed, "train src (seed 42)").cached
    assert _record(mixed, "translate en→es").cached
    assert not _record(mixed, TEACH).cached
    assert _record(mixed, TEACH).key != _record(plain, TEACH).key
    before, after = _manifest(plain, TEACH), _manifest(mixed, TEACH)
    assert set(after["inputs"]) - set(before["inputs"]) == {"extra0"}
    assert after["inputs"]["extra0"] == _manifest(plain, "train src (seed 42)")["inputs"]["data"]
    n_source = _manifest(plain, "train src (seed 42)")["metrics"]["sentences"]
    assert after["metrics"]["sentences"] == before["metrics"]["sentences"] + n_source
    card = (mixed.exports["es"]["unitrans"] / "README.md").read_text()
    assert "(rehearsal; beyond the paper" in card
    assert "(rehearsal; beyond the paper" not in (plain.exports["es"]["unitrans"] / "README.md").read_text()


def test_teach_data_is_checked_and_settable():
    assert parse_settings(["teach_data=trans+source"]) == {"teach_data": "trans+source"}
    assert make_config("paper", targets=("es",)).teach_data == "trans"
    with pytest.raises(UnitransError, match="teach_data among trans, trans\\+source"):
        make_config("paper", targets=("es",), teach_data="source")
