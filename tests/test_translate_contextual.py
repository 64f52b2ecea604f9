"""Contextual choice of translations (issue 15): among a word's top-k CSLS candidates, the one that fits
the token's own contextual vector, 2·cos(W h, t_c) − r_T(t_c)."""

from pathlib import Path

import numpy as np
import pytest

from unitrans.data import Sentence, read_conll, read_unlabelled
from unitrans.errors import UnitransError
from unitrans.translate import contextual
from unitrans.translate.contextual import choose, contextual_choices, normalizer
from unitrans.translate.csls import csls_neighbours
from unitrans.translate.embeddings import NORMALIZATIONS, WordEmbeddings, normalize
from unitrans.translate.lexicon import Lexicon
from unitrans.translate.word_translation import (
    TranslateConfig,
    translate_corpus,
    translate_sentences,
    word_vectors,
)

FIXTURES = Path(__file__).parent / "fixtures" / "translate"


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_choose_is_csls_with_the_token_as_query():
    # targets: 0 banco (money), 1 orilla (river), 2 ribera (river, a hub: high r_T), 3 mesa (unrelated)
    tgt = unit([[1.0, 0.1, 0.0], [0.1, 1.0, 0.0], [0.2, 1.0, 0.05], [0.0, 0.0, 1.0]])
    r_tgt = np.array([0.3, 0.3, 0.6, 0.2], dtype=np.float32)
    candidates = np.array([[0, 1, 2], [0, 1, 2], [0, 1, 2]])  # 'bank': banco first by type-level CSLS
    money, river, far = unit([1.0, 0.0, 0.0]), unit([0.2, 1.0, 0.05]), unit([0.0, 0.0, 1.0])  # far: near mesa
    queries = np.stack([money, river, far])
    picked = choose(queries * 3.0, candidates, tgt * 2.0, r_tgt)  # norms do not matter
    # direct transcription of the rule
    expected = [
        int(np.argmax([2 * q @ tgt[c] - r_tgt[c] for c in row]))
        for q, row in zip(queries, candidates, strict=True)
    ]
    assert picked.tolist() == expected == [0, 1, 0]  # 'ribera' is closer to the river token but a hub


def test_choose_breaks_ties_by_the_csls_rank():
    tgt = unit([[1.0, 0.0], [1.0, 0.0]])
    picked = choose(unit([[1.0, 0.0]]), np.array([[1, 0]]), tgt, np.zeros(2, np.float32))
    assert picked.tolist() == [0]


@pytest.mark.parametrize("how", NORMALIZATIONS)
def test_a_token_is_normalized_exactly_like_its_type(how):
    rng = np.random.default_rng(0)
    types = rng.normal(size=(50, 8)).astype(np.float32) + 3.0
    np.testing.assert_allclose(normalizer(types, how)(types), normalize(types, how), atol=1e-6)
    one = types[:1] * 1.5  # another row: centered by the *types'* mean, then renormed
    if how == "center,renorm":
        expected = unit(one - types.mean(axis=0, keepdims=True))
        np.testing.assert_allclose(normalizer(types, how)(one), expected, atol=1e-6)


def test_choices_override_the_lexicon_except_dictionary_words():
    lexicon = Lexicon(
        ("bank", "the", "money"), ("banco", "el", "dinero"), np.array([0.5, 0.9, np.nan], np.float32)
    )
    lexicon = Lexicon(lexicon.source, lexicon.target, lexicon.score, from_dictionary=frozenset({"money"}))
    source = [Sentence(("The", "bank", "money", "Bank"), ("O",) * 4)]
    choices = [["el", "orilla", "plata", None]]  # None: no contextual vector, the lexicon's word
    out, stats = translate_sentences(source, lexicon, TranslateConfig(casing="source"), {}, choices)
    assert out[0].words == ("El", "orilla", "dinero", "Banco")
    assert stats["contextual_changed"] == 1 and stats["translated_by_dictionary"] == 1


def test_config_checks_and_key():
    with pytest.raises(UnitransError, match="encoder-derived"):
        TranslateConfig(contextual=True, src_emb="a.vec", tgt_emb="b.vec")
    with pytest.raises(UnitransError, match="contextual_k"):
        TranslateConfig(contextual=True, contextual_k=0)
    assert "contextual" not in TranslateConfig(contextual_k=7).to_dict()
    assert TranslateConfig(contextual=True).to_dict()["contextual_k"] == 5


def test_on_the_tiny_encoder_choices_are_candidates_deterministic_and_a_single_context_keeps_the_lexicon(
    tiny_encoder_dir, tmp_path
):
    source = read_conll(FIXTURES / "en.conll")
    target = read_unlabelled(FIXTURES / "es.txt")
    config = TranslateConfig(encoder=str(tiny_encoder_dir), contextual=True, contextual_k=3)
    first = translate_corpus(source, target, config, cache_dir=tmp_path, progress=False)
    again = translate_corpus(source, target, config, cache_dir=tmp_path, progress=False)
    assert [s.words for s in first.sentences] == [s.words for s in again.sentences]
    assert [s.tags for s in first.sentences] == [s.tags for s in source]
    assert first.stats["contextual_k"] == 3 and "contextual_changed" in first.stats

    from unitrans.translate.alignment import select_and_align

    src_layers, tgt_layers = word_vectors(source, target, config, cache_dir=tmp_path, progress=False)
    alignment, _ = select_and_align(src_layers, tgt_layers, config.align_config())
    choices = contextual_choices(
        source, alignment, src_layers[alignment.layer], config.vector_config(),
        normalize=config.normalize, k=3, csls_k=config.csls_k, progress=False,
    )  # fmt: skip
    nb = csls_neighbours(alignment.mapped_source(), alignment.tgt.vectors, k=config.csls_k, topn=3)
    index, counts = alignment.src.index(), dict(zip(alignment.src.words, alignment.src.counts, strict=True))
    checked = 0
    for sent, row in zip(source, choices, strict=True):
        for word, choice in zip(sent.words, row, strict=True):
            cands = [alignment.tgt.words[j] for j in nb.indices[index[word.lower()]]]
            assert choice in cands
            if counts[word.lower()] == 1:  # one context: the token vector is the type vector
                assert choice == cands[0]
                checked += 1
    assert checked >= 10


def test_a_token_near_another_candidate_gets_it(monkeypatch):
    """The whole path on constructed vectors: 'bank' in a river sentence takes the river translation."""
    src = WordEmbeddings(
        ("bank", "river", "money"), unit([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    )
    tgt = WordEmbeddings(
        ("banco", "río", "dinero", "orilla"),
        unit([[1.0, 0.9, 0.0], [0.0, 1.0, 0.1], [1.0, 0.0, 0.1], [0.5, 1.0, 0.0]]),
    )
    from unitrans.translate.alignment import Alignment

    alignment = Alignment(np.eye(3, dtype=np.float32), src, tgt, 3, 1.0, (), layer=1)
    sentences = [Sentence(("money", "bank")), Sentence(("river", "bank"))]
    states = {
        (0, 1): [1.0, 0.2, 0.0],
        (1, 1): [0.2, 1.0, 0.0],
        (0, 0): [1.0, 0.0, 0.0],
        (1, 0): [0.0, 1.0, 0.0],
    }

    def fake_token_vectors(sents, config, layer, progress=True):
        keys = sorted(states)
        yield np.array([k[0] for k in keys]), np.array([k[1] for k in keys]), unit([states[k] for k in keys])

    monkeypatch.setattr(contextual, "token_vectors", fake_token_vectors)
    choices = contextual_choices(
        sentences,
        alignment,
        src,
        TranslateConfig().vector_config(),
        normalize="",
        k=2,
        csls_k=2,
        progress=False,
    )
    nb = csls_neighbours(src.vectors, tgt.vectors, k=2, topn=2)
    assert [tgt.words[j] for j in nb.indices[0]] == ["banco", "orilla"]  # 'bank': banco first by CSLS
    assert choices[0][1] == "banco" and choices[1][1] == "orilla"
