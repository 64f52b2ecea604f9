import numpy as np
import pytest

from unitrans.data import Sentence
from unitrans.errors import UnitransError
from unitrans.translate.casing import (
    apply_casing,
    capitalised_share,
    casing_pattern,
    resolve_casing,
    usual_forms,
)
from unitrans.translate.lexicon import Lexicon
from unitrans.translate.word_translation import TranslateConfig, translate_sentences

LEXICON = Lexicon(
    source=("the", "house", "john", "madrid", "said", "eu", "unsure"),
    target=("das", "haus", "hans", "madrid", "sagte", "eu", "vielleicht"),
    score=np.array([0.9, 0.8, 0.7, 0.95, 0.6, 0.5, 0.05], dtype=np.float32),
)
SOURCE = [
    Sentence(
        ("John", "said", "the", "house", "in", "Madrid", "cost", "1,500", "$", "."),
        ("B-PER", "O", "O", "O", "O", "B-LOC", "O", "O", "O", "O"),
        1,
    ),
    Sentence(("THE", "EU", "unsure", "-"), ("O", "B-ORG", "O", "O"), 12),
]


def test_labels_and_lengths_are_preserved_and_policies_applied():
    out, stats = translate_sentences(SOURCE, LEXICON, TranslateConfig(), {})
    assert [len(s) for s in out] == [len(s) for s in SOURCE]
    assert [s.tags for s in out] == [s.tags for s in SOURCE]
    assert [s.line for s in out] == [1, 12]
    assert out[0].words == ("John", "sagte", "das", "haus", "in", "Madrid", "cost", "1,500", "$", ".")
    assert out[1].words == ("DAS", "EU", "vielleicht", "-")
    assert stats["copied_person"] == 1 and stats["copied_number"] == 1
    assert stats["copied_punctuation"] == 3 and stats["copied_oov"] == 2  # 'in', 'cost'
    assert stats["translated"] == 7 and stats["translated_identical"] == 2  # Madrid, EU
    assert (
        sum(
            v
            for k, v in stats.items()
            if k.startswith(("copied", "translated")) and k != "translated_identical"
        )
        == 14
    )


def test_person_names_translated_when_asked_and_low_scores_copied():
    config = TranslateConfig(keep_person_names=False, min_csls=0.1)
    out, stats = translate_sentences(SOURCE, LEXICON, config, {})
    assert out[0].words[0] == "Hans"
    assert out[1].words[2] == "unsure" and stats["copied_low_score"] == 1


def test_target_casing_restores_german_nouns():
    target = [Sentence(("Das", "Haus", "ist", "alt")), Sentence(("Ich", "sah", "das", "Haus"))]
    usual = usual_forms(target, lowercase=True)
    assert usual["haus"] == "Haus" and usual["das"] == "das"  # sentence-initial 'Das' counts last
    out, _ = translate_sentences(SOURCE, LEXICON, TranslateConfig(casing="target"), usual)
    assert out[0].words[2:4] == ("das", "Haus")
    assert out[1].words[0] == "DAS"


@pytest.mark.parametrize(
    ("source", "translation", "usual", "policy", "expected"),
    [
        ("Paris", "parís", None, "source", "París"),
        ("PARIS", "parís", None, "source", "PARÍS"),
        ("house", "Haus", "Haus", "source", "haus"),
        ("house", "haus", "Haus", "target", "Haus"),
        ("McDonald", "mcdonald", None, "source", "Mcdonald"),
        ("house", "Haus", None, "lexicon", "Haus"),
    ],
)
def test_apply_casing(source, translation, usual, policy, expected):
    assert apply_casing(source, translation, usual, policy) == expected


def test_auto_casing_follows_the_language_that_capitalises_more():
    en = [Sentence(("The", "house", "of", "John", "is", "old", ".")), Sentence(("1", "2"))]
    de = [Sentence(("Das", "Haus", "von", "Hans", "ist", "alt", "."))]
    # words with letters after the first of a sentence: en house of John is old -> 1/5; de 2/5
    assert capitalised_share(en) == pytest.approx(0.2) and capitalised_share(de) == pytest.approx(0.4)
    assert capitalised_share([]) == 0.0
    assert resolve_casing("auto", en, de) == "target"
    assert resolve_casing("auto", de, en) == "source"
    assert resolve_casing("auto", en, en) == "source"
    assert resolve_casing("lexicon", en, de) == "lexicon"
    assert TranslateConfig().casing == "target"


def test_casing_pattern():
    assert [casing_pattern(w) for w in ("EU", "Eu", "eu", "eU", "1990", "A")] == [
        "upper",
        "title",
        "lower",
        "lower",
        "none",
        "title",
    ]


def test_config_validation():
    with pytest.raises(UnitransError, match="casing"):
        TranslateConfig(casing="upper")
    with pytest.raises(UnitransError, match="both"):
        TranslateConfig(src_emb="a.vec")
    with pytest.raises(UnitransError):
        TranslateConfig(refinement_rounds=-1)
