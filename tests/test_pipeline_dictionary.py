"""The pipeline's side of issue 15's word-translation options: the translation stage's key, the
dictionary-assisted label in the report and the model card, errors before any training."""

import json
import shlex
import shutil
from pathlib import Path

import pytest
import torch

from unitrans.cli import main
from unitrans.data import Sentence
from unitrans.errors import UnitransError
from unitrans.eval.report import render_markdown
from unitrans.pipeline.config import make_config
from unitrans.pipeline.export import command_line, model_card
from unitrans.pipeline.runner import run_pipeline
from unitrans.pipeline.settings import parse_settings
from unitrans.pipeline.translation import settings

FIXTURES = Path(__file__).parent / "fixtures" / "pipeline"
EN = [Sentence(("The", "commission", "said", "on", "Thursday"))]
ES = [Sentence(("La", "comisión", "dijo", "el", "jueves"))]

# The translation key's settings before issue 15 (unitrans 0.x, commit c9b863c), written out: a run without
# a dictionary and without the contextual choice must keep exactly these, so its cache stays valid.
BEFORE = {
    "translate": {
        "encoder": "me5-small", "src_emb": None, "tgt_emb": None, "max_vocab": 200000, "layers": None,
        "max_occurrences": 30, "lowercase": True, "normalize": "center,renorm", "refinement_rounds": 3,
        "dico_max_rank": 10000, "csls_k": 10, "criterion": "mutual", "borrowing_ratio": 10.0,
        "copy_numbers": True, "copy_punctuation": True, "keep_person_names": True, "min_csls": None,
        "casing": "target",
    }
}  # fmt: skip


def test_without_the_new_options_the_translation_key_is_unchanged():
    assert settings(make_config("paper", targets=("es",)), EN, ES) == BEFORE
    quick = settings(make_config("quick", targets=("es",)), EN, ES)
    assert quick == {"translate": {**BEFORE["translate"], "layers": (6, 12)}}


def test_the_dictionary_enters_the_key_by_content_not_path(tmp_path):
    first = tmp_path / "a" / "en-es.txt"
    first.parent.mkdir()
    first.write_text("commission comisión\n", encoding="utf-8")
    moved = tmp_path / "elsewhere.txt"
    shutil.copy(first, moved)
    key = settings(make_config("paper", targets=("es",), dictionary=first), EN, ES)
    assert key == {**BEFORE, "dictionary_sha256": key["dictionary_sha256"]}
    assert str(first) not in json.dumps(key)
    assert settings(make_config("paper", targets=("es",), dictionary=moved), EN, ES) == key
    moved.write_text("commission comisión\nsaid dijo\n", encoding="utf-8")
    assert settings(make_config("paper", targets=("es",), dictionary=moved), EN, ES) != key


def test_the_contextual_choice_enters_the_key_only_when_on():
    on = settings(
        make_config("paper", targets=("es",), **parse_settings(["contextual_translation=true"])), EN, ES
    )
    assert on == {"translate": {**BEFORE["translate"], "contextual": True, "contextual_k": 5}}
    off = make_config("paper", targets=("es",), **parse_settings(["contextual_translation=off"]))
    assert settings(off, EN, ES) == BEFORE


def test_settings_parse_and_validate():
    assert parse_settings(["contextual_translation=yes", "dictionary=d.txt"]) == {
        "contextual_translation": True,
        "dictionary": Path("d.txt"),
    }
    assert parse_settings(["dictionary=none"]) == {"dictionary": None}
    with pytest.raises(UnitransError, match="expected a bool value"):
        parse_settings(["contextual_translation=maybe"])


def test_the_report_labels_a_dictionary_run_and_drops_the_paper_columns():
    results = {
        "es": {"unitrans": {"f1": 0.7, "precision": 0.7, "recall": 0.7, "f1_std": None, "per_seed": []}}
    }
    plain = render_markdown(results, encoder="e", titles={})
    assert plain.startswith("# unitrans results\n") and "es (paper)" in plain
    setting = {"name": "dictionary-assisted", "dictionary": "/d/en-es.txt", "sha256": "ab" * 32}
    md = render_markdown(results, encoder="e", titles={}, setting=setting)
    assert md.startswith("# unitrans results (dictionary-assisted, not zero-resource)\n")
    assert "`/d/en-es.txt`" in md and "abababab" in md and "No lexicon P@1" in md
    assert "(paper)" not in md and "79.31" not in md


def test_the_model_card_of_a_dictionary_run_says_so(tmp_path):
    summary = {
        "f1": 0.5,
        "precision": 0.5,
        "recall": 0.5,
        "f1_std": None,
        "per_seed": [{"seed": 42, "f1": 0.5}],
    }
    labels = ["O", "B-PER", "I-PER"]

    def card(**changes):
        config = make_config("paper", targets=("es",), out_dir=tmp_path, **changes)
        return config, model_card(
            config, "es", "unitrans", 42, labels, {"unitrans": summary}, folder=tmp_path, pipeline_ready=False
        )

    _, plain = card()
    assert "zero-resource, cross-lingual" in plain and "dictionary" not in plain.lower()
    config, assisted = card(dictionary=tmp_path / "en-es.txt", contextual_translation=True)
    front = assisted.split("---")[1]
    assert "dictionary-assisted, cross-lingual" in front and "zero-resource" not in front
    assert "**Dictionary-assisted, not zero-resource**" in assisted
    setting = shlex.quote(f"dictionary={tmp_path / 'en-es.txt'}")
    assert f"--set {setting}" in command_line(config)
    assert "--set contextual_translation=True" in command_line(config)


TINY = {"epochs": 1, "batch_size": 4, "max_length": 32, "freeze_layers": 1, "teacher_lr": 2e-2, "workers": 1}


def test_a_bad_dictionary_fails_before_any_training(tiny_encoder_dir, tmp_path, capsys):
    bad = tmp_path / "d.txt"
    bad.write_text("la el\nuno\n", encoding="utf-8")
    code = main(["run", "--target", "es", "--data-dir", str(FIXTURES), "--encoder", str(tiny_encoder_dir),
                 "--out", str(tmp_path / "out"), "--dictionary", str(bad), "--variants", "src"])  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f'unitrans: error: {bad}:2: expected "source target", found 1 field'
    )
    assert not (tmp_path / "out" / "cache" / "model").exists()


def test_a_dictionary_run_translates_with_it_and_reports_the_setting(tiny_encoder_dir, tmp_path):
    torch.set_num_threads(1)
    dictionary = tmp_path / "en-es.txt"
    dictionary.write_text("said dijo\nthe la\n", encoding="utf-8")
    common = {"targets": ("es",), "data_dir": FIXTURES, "encoder": str(tiny_encoder_dir),
              "variants": ("trans",), "cache_dir": tmp_path / "cache", **TINY}  # fmt: skip
    plain = run_pipeline(make_config("paper", out_dir=tmp_path / "plain", **common), progress=False)
    assisted = run_pipeline(
        make_config("paper", out_dir=tmp_path / "dict", dictionary=dictionary, **common), progress=False
    )
    (t_plain,) = [r for r in plain.records if r.stage == "translate"]
    (t_dict,) = [r for r in assisted.records if r.stage == "translate"]
    assert t_plain.key != t_dict.key
    assert t_dict.metrics["setting"] == "dictionary-assisted" and t_dict.metrics["dictionary_entries"] == 2
    assert "setting" not in t_plain.metrics
    words = (t_dict.folder / "dtrans.txt").read_text(encoding="utf-8").split()
    assert "said" not in words and "dijo" in words
    assert "dictionary-assisted" in (tmp_path / "dict" / "results.md").read_text()
    assert "dictionary" not in (tmp_path / "plain" / "results.md").read_text()
