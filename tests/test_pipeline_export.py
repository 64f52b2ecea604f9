"""The model a run hands the user: `<out>/models/<lang>/`, complete, with its card and labels, reloadable."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from unitrans.cli import main
from unitrans.commands.run import expand_multi_values
from unitrans.data import read_conll
from unitrans.errors import UnitransError
from unitrans.model.predict import predict_probs
from unitrans.model.tagger import load_tagger
from unitrans.pipeline.config import make_config
from unitrans.pipeline.export import command_line, default_export, hub_name
from unitrans.pipeline.runner import run_pipeline
from unitrans.pipeline.settings import parse_settings

FIXTURES = Path(__file__).parent / "fixtures" / "pipeline"
TINY = {"epochs": 2, "teach_epochs": 1, "student_epochs": 2, "batch_size": 4, "max_length": 32,
        "freeze_layers": 1, "teacher_lr": 2e-2, "student_lr": 2e-2, "workers": 1}  # fmt: skip


@pytest.fixture(scope="module")
def exported(tiny_encoder_dir, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("export")
    config = make_config(
        "paper", targets=("es",), data_dir=FIXTURES, encoder=str(tiny_encoder_dir), out_dir=out,
        variants=("src", "teach", "unitrans"), export=("unitrans", "src"), seeds=2, **TINY,
    )  # fmt: skip
    return run_pipeline(config, progress=False), config


def test_the_default_variant_goes_to_models_lang(exported):
    result, config = exported
    assert result.exports == {
        "es": {"unitrans": config.out_dir / "models" / "es", "src": config.out_dir / "models" / "es-src"}
    }
    folder = result.exports["es"]["unitrans"]
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "unitrans.json", "README.md", "labels.txt"} <= names
    assert not [n for n in os.listdir(folder.parent) if n.startswith(".")]  # no staging folder left
    source = Path(result.runs["es"]["unitrans"][0]["model"])
    assert (source / "delta.safetensors").is_file()  # the cache is compact, the export complete
    mine, theirs = load_tagger(folder)[0].state_dict(), load_tagger(source)[0].state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[n], theirs[n]) for n in mine)
    labels = (folder / "labels.txt").read_text().splitlines()
    meta = json.loads((folder / "config.json").read_text())
    assert labels == [meta["id2label"][str(i)] for i in range(len(labels))] and "B-PER" in labels
    mode = 0o666 & ~_umask()
    assert (folder / "README.md").stat().st_mode & 0o777 == mode
    assert (folder / "model.safetensors").stat().st_mode & 0o777 == mode


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_the_card_says_how_it_was_made_and_how_it_scored(exported):
    result, _ = exported
    card = (result.exports["es"]["unitrans"] / "README.md").read_text()
    front = card.split("---")[1]
    assert "language: [es]" in front and "base_model" not in front  # a local folder has no hub name
    assert "pipeline_tag: token-classification" in front
    f1 = result.results["es"]["unitrans"]
    assert f"value: {f1['f1']:.4f}" in front
    mean, std = f"{100 * f1['f1']:.2f}", f"{100 * f1['f1_std']:.2f}"
    assert f"{mean} ± {std} over 2 seeds" in card
    for run in result.runs["es"]["unitrans"]:
        assert f"{100 * run['f1']:.2f} (seed {run['seed']})" in card
    assert "seed-42 model" in card and "Apache-2.0" in card and "Limitations" in card
    assert str(FIXTURES / "en" / "train.txt") in card
    assert f"unitrans tag --model {result.exports['es']['unitrans']}" in card
    other = (result.exports["es"]["src"] / "README.md").read_text()
    assert "Model transfer (Θsrc) (this model)" in other


def test_the_cards_command_recomputes_the_config(exported):
    _, config = exported
    line = command_line(config)
    args = expand_multi_values(shlex.split(line)[2:])
    preset = args[args.index("--preset") + 1]
    targets = tuple(args[i + 1] for i, a in enumerate(args) if a == "--target")
    sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    again = make_config(
        preset, targets=targets, data_dir=Path(args[args.index("--data-dir") + 1]),
        out_dir=Path(args[args.index("--out") + 1]), **parse_settings(sets),
    )  # fmt: skip
    keep = ("workers", "verify", "share_states", "export")  # change no number; the card leaves them out
    assert {k: v for k, v in again.to_dict().items() if k not in keep} == {
        k: v for k, v in config.to_dict().items() if k not in keep
    }


def test_the_export_reloads_and_predicts_like_the_cached_model(exported):
    result, _ = exported
    folder = result.exports["es"]["unitrans"]
    cached = Path(result.runs["es"]["unitrans"][0]["model"])
    sentences = read_conll(FIXTURES / "es" / "test.txt")[:5]
    a = predict_probs(cached, sentences, batch_size=4, progress=False)
    b = predict_probs(folder, sentences, batch_size=4, progress=False)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    model, _ = load_tagger(folder)
    assert model.config.num_labels == len((folder / "labels.txt").read_text().splitlines())


def test_tag_runs_on_the_exported_folder(exported, tmp_path, capsys):
    result, _ = exported
    text = tmp_path / "in.txt"
    text.write_text("María vive en Madrid .\n\nJuan trabaja en Barcelona .\n", encoding="utf-8")
    assert main(["tag", "--model", str(result.exports["es"]["unitrans"]), str(text)]) == 0
    out = capsys.readouterr().out
    for line in out.splitlines():
        json.loads(line)


def test_an_unchanged_export_is_not_copied_again(exported):
    result, config = exported
    folder = result.exports["es"]["unitrans"]
    before = (folder / "model.safetensors").stat().st_ino
    again = run_pipeline(config, progress=False)
    assert all(r.cached for r in again.records)
    assert (again.exports["es"]["unitrans"] / "model.safetensors").stat().st_ino == before


def test_base_model_names_the_hub_model():
    assert hub_name("me5-small") == "intfloat/multilingual-e5-small"
    assert hub_name("xlm-roberta-base") == "xlm-roberta-base"


def test_export_settings_are_checked():
    assert default_export(make_config("paper", targets=("es",), variants=("src", "teach"))) == ("teach",)
    assert default_export(make_config("paper", targets=("es",))) == ("unitrans",)
    with pytest.raises(UnitransError, match="cannot export trans"):
        make_config("paper", targets=("es",), variants=("src",), export=("trans",))
    with pytest.raises(UnitransError, match="variant"):
        make_config("paper", targets=("es",), export=("bogus",))
    with pytest.raises(UnitransError, match="NAME=VALUE"):
        parse_settings(["preset=quick"])
