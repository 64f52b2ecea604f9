"""Word vectors from several encoders compete; the label-free criterion picks one (issue 14 item 4)."""

import json
from pathlib import Path

import pytest

from conftest import build_tiny_encoder
from unitrans.cli import main
from unitrans.data import read_conll, read_unlabelled
from unitrans.errors import UnitransError
from unitrans.pipeline.config import PipelineConfig
from unitrans.pipeline.settings import parse_settings
from unitrans.pipeline.translation import settings
from unitrans.translate.word_translation import TranslateConfig, choose_encoder, translate_corpus

FIXTURES = Path(__file__).parent / "fixtures" / "translate"


@pytest.fixture(scope="module")
def three_encoders(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Three tiny BERTs that differ only in their random weights, so their maps align differently."""
    root = tmp_path_factory.mktemp("encoders")
    return [str(build_tiny_encoder(root / f"seed{seed}", seed=seed)) for seed in range(3)]


@pytest.fixture(scope="module")
def texts():
    return read_conll(FIXTURES / "en.conll"), read_unlabelled(FIXTURES / "es.txt")


def test_the_encoder_with_the_highest_criterion_translates(three_encoders, texts, tmp_path):
    source, target = texts
    first, *others = three_encoders
    config = TranslateConfig(encoder=first, other_encoders=tuple(others))
    result = translate_corpus(source, target, config, cache_dir=tmp_path, progress=False)
    per_encoder = result.stats["criterion_per_encoder"]
    assert list(per_encoder) == three_encoders
    best = max(three_encoders, key=lambda e: max(per_encoder[e].values()))
    assert result.stats["encoder"] == best
    assert result.stats["criterion"] == max(per_encoder[best].values())
    assert len({max(v.values()) for v in per_encoder.values()}) > 1  # the choice is not a tie
    # exactly what the chosen encoder gives alone
    alone_config = TranslateConfig(encoder=best)
    alone = translate_corpus(source, target, alone_config, cache_dir=tmp_path, progress=False)
    assert alone.sentences == result.sentences
    assert alone.lexicon.as_dict() == result.lexicon.as_dict()
    assert "encoder" not in alone.stats and "criterion_per_encoder" not in alone.stats


def test_a_tie_keeps_the_runs_encoder(three_encoders, texts, tmp_path):
    twin = tmp_path / "twin"
    twin.symlink_to(three_encoders[1], target_is_directory=True)  # the same weights under another name
    config = TranslateConfig(encoder=three_encoders[1], other_encoders=(str(twin),))
    choice = choose_encoder(*texts, config, cache_dir=tmp_path, progress=False)
    assert choice.criteria[three_encoders[1]] == choice.criteria[str(twin)]
    assert choice.config.encoder == three_encoders[1] and choice.config.other_encoders == ()


def test_settings_and_keys(three_encoders, texts):
    first, second, _ = three_encoders
    plain = TranslateConfig(encoder=first)
    assert "other_encoders" not in plain.to_dict()  # keys of runs without it are unchanged
    assert TranslateConfig(encoder=first, other_encoders=(second,)).to_dict()["other_encoders"] == (second,)
    with pytest.raises(UnitransError, match="is the encoder already"):
        TranslateConfig(encoder=first, other_encoders=(first,))
    with pytest.raises(UnitransError, match="not --src-emb"):
        TranslateConfig(src_emb="a.vec", tgt_emb="b.vec", other_encoders=(second,))

    source, target = texts
    base = PipelineConfig(targets=("es",), encoder=first)
    assert settings(base, source, target) == settings(
        PipelineConfig(targets=("es",), encoder=first, translate_encoders=(first,)), source, target
    )  # naming the run's own encoder changes nothing
    other = PipelineConfig(targets=("es",), encoder=first, **parse_settings([f"translate_encoders={second}"]))
    assert other.translate_encoders == (second,)
    assert settings(other, source, target)["translate"]["other_encoders"] == (second,)


def test_cli_lexicon_eval_names_the_chosen_encoder(three_encoders, tmp_path, capsys):
    first, *others = three_encoders
    args = ["lexicon", "eval", "--source-text", str(FIXTURES / "en.conll"), "--target-text"]
    args += [str(FIXTURES / "es.txt"), "--dict", str(FIXTURES / "en-es.dict"), "--json"]
    args += ["--encoder", first, "--cache-dir", str(tmp_path)]
    for other in others:
        args += ["--other-encoder", other]
    assert main(args) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["encoder"] in three_encoders and scores["pairs"] == 3
    assert main([*args, "--other-encoder", first]) == 2
    assert "is the encoder already" in capsys.readouterr().err
