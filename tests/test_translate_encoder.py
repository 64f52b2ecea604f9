import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from unitrans.cli import main
from unitrans.data import Sentence, read_conll, read_unlabelled
from unitrans.errors import UnitransError
from unitrans.translate import encoder_vectors
from unitrans.translate.encoder_vectors import TypeVectorConfig, type_vectors
from unitrans.translate.word_translation import TranslateConfig, translate_corpus

FIXTURES = Path(__file__).parent / "fixtures" / "translate"
SENTENCES = [
    Sentence(("The", "man", "said", "the", "city", ".")),
    Sentence(("THE", "company", "in", "London", ".")),
    Sentence(("the", "team", "visited", "Madrid", "and", "the", "city", ".")),
]


def test_types_frequency_order_lowercased_and_capped(tiny_encoder_dir, tmp_path):
    config = TypeVectorConfig(encoder=str(tiny_encoder_dir), max_occurrences=1, bf16=False)
    layers = type_vectors(SENTENCES, config, cache_dir=tmp_path, progress=False)
    assert list(layers) == [2]  # a 2-layer encoder: default candidates are the last layer only
    emb = layers[2]
    assert emb.words[:3] == ("the", ".", "city")  # 5, 3, 2 occurrences; case variants pooled
    assert emb.counts[:3].tolist() == [5, 3, 2]
    # with max_occurrences=1 each vector is the contextual vector of the type's first occurrence
    tok = AutoTokenizer.from_pretrained(tiny_encoder_dir)
    model = AutoModel.from_pretrained(tiny_encoder_dir).eval()
    enc = tok([list(SENTENCES[0].words)], is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc, output_hidden_states=True).hidden_states[2][0]
    position = enc.word_ids(0).index(2)  # 'said'
    np.testing.assert_allclose(emb.vectors[emb.words.index("said")], hidden[position].numpy(), atol=2e-3)


def test_cased_types_and_cache(tiny_encoder_dir, tmp_path, monkeypatch):
    config = TypeVectorConfig(encoder=str(tiny_encoder_dir), lowercase=False, layers=(1, 2), bf16=False)
    first = type_vectors(SENTENCES, config, cache_dir=tmp_path, progress=False)
    assert {"The", "THE", "the"} <= set(first[1].words)
    assert len(list((tmp_path / "type-embeddings").glob("*.npz"))) == 1

    def no_encoding(*args, **kwargs):
        raise AssertionError("should have been read from the cache")

    monkeypatch.setattr(encoder_vectors, "_extract", no_encoding)
    again = type_vectors(SENTENCES, config, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(again[2].vectors, first[2].vectors)
    with pytest.raises(AssertionError):  # another corpus is another cache entry
        type_vectors(SENTENCES[:2], config, cache_dir=tmp_path, progress=False)
    with pytest.raises(UnitransError, match="out of range"):
        type_vectors(
            SENTENCES, TypeVectorConfig(encoder=str(tiny_encoder_dir), layers=(7,)), cache_dir=tmp_path
        )


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_type_vector_cache_is_rebuilt_with_a_warning(tiny_encoder_dir, tmp_path, caplog, damage):
    config = TypeVectorConfig(encoder=str(tiny_encoder_dir), layers=(1, 2), bf16=False)
    first = type_vectors(SENTENCES, config, cache_dir=tmp_path, progress=False)
    (path,) = (tmp_path / "type-embeddings").glob("*.npz")
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:  # one flipped byte inside the first vector array's data
        i = data.index(b"vec_") + 400
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    again = type_vectors(SENTENCES, config, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(again[2].vectors, first[2].vectors)
    assert [r for r in caplog.records if "damaged type-embedding cache" in r.getMessage()]


def test_translate_corpus_on_tiny_encoder(tiny_encoder_dir, tmp_path):
    source = read_conll(FIXTURES / "en.conll")
    target = read_unlabelled(FIXTURES / "es.txt")
    result = translate_corpus(
        source, target, TranslateConfig(encoder=str(tiny_encoder_dir)), cache_dir=tmp_path, progress=False
    )
    assert [s.tags for s in result.sentences] == [s.tags for s in source]
    assert [len(s) for s in result.sentences] == [len(s) for s in source]
    assert result.stats["seed_pairs"] >= 5 and result.stats["layer"] == 2
    assert set(result.lexicon.target) <= {w.lower() for s in target for w in s.words}
    assert result.sentences[0].words[:2] == ("John", "Smith")  # person names kept


def test_cli_translate_and_lexicon_eval(tiny_encoder_dir, tmp_path, capsys):
    common = ["--encoder", str(tiny_encoder_dir), "--cache-dir", str(tmp_path / "cache")]
    out, lex = tmp_path / "trans.conll", tmp_path / "lex.tsv"
    code = main(
        [
            "translate",
            "--source",
            str(FIXTURES / "en.conll"),
            "--target-text",
            str(FIXTURES / "es.txt"),
            "--out",
            str(out),
            "--lexicon-out",
            str(lex),
            *common,
        ]
    )
    assert code == 0
    assert [s.tags for s in read_conll(out)] == [s.tags for s in read_conll(FIXTURES / "en.conll")]
    rows = lex.read_text(encoding="utf-8").splitlines()
    assert rows[0] == "source\ttarget\tcsls" and len(rows) > 10
    sidecar = json.loads((tmp_path / "trans.conll.json").read_text())
    assert (
        sidecar["config"]["casing"] == "target"
        and sidecar["stats"]["casing"] in ("source", "target")
        and sidecar["stats"]["tokens"] == 32
    )
    capsys.readouterr()
    code = main(
        [
            "lexicon",
            "eval",
            "--source-text",
            str(FIXTURES / "en.conll"),
            "--target-text",
            str(FIXTURES / "es.txt"),
            "--dict",
            str(FIXTURES / "en-es.dict"),
            "--json",
            *common,
        ]
    )
    assert code == 0
    scores = json.loads(capsys.readouterr().out)
    assert set(scores["csls"]) == {"p@1", "p@5", "p@10"} and set(scores["nn"]) == {"p@1", "p@5", "p@10"}
    assert scores["pairs"] == 3  # the-el, the-la, company-empresa (no 'city', 'man' in en.conll)
    assert all(0.0 <= v <= 1.0 for v in scores["csls"].values())


def test_cli_reports_a_malformed_vec_file(tmp_path, capsys):
    code = main(
        [
            "translate",
            "--source",
            str(FIXTURES / "en.conll"),
            "--target-text",
            str(FIXTURES / "es.txt"),
            "--out",
            str(tmp_path / "o.conll"),
            "--src-emb",
            str(FIXTURES / "bad.vec"),
            "--tgt-emb",
            str(FIXTURES / "small.vec"),
        ]
    )
    assert code == 2
    assert f"{FIXTURES / 'bad.vec'}:3: expected a word and 3 numbers" in capsys.readouterr().err


# --- every encoder family (issue 14): words → subwords as in the tagger -------------------------------------

FAMILY_DIRS = ["tiny_xlmr_dir", "tiny_deberta_dir", "tiny_gemma_dir"]
FAMILY_SENTENCES = [
    Sentence(("John", "Smith", "visited", "Madrid", "with", "Mary", ".")),
    Sentence(("Juan", "vive", "en", "Barcelona", ",", "2020", "xq")),  # xq, 2020: several subwords
    Sentence(("the", "capital", "of", "the", "EU", "is", "Brussels")),  # Gemma's `▁of▁the` spans two words
]


def _running_text_columns(text: str, offsets, start: int, end: int) -> list[int]:
    """Subwords of the word at text[start:end] in running text: those overlapping it, plus the
    whitespace-only subwords (a lone `▁`) right before them."""
    cols = [c for c, (a, b) in enumerate(offsets) if a < end and b > start and b > a]
    while cols and cols[0] > 0 and offsets[cols[0] - 1][1] > offsets[cols[0] - 1][0]:
        a, b = offsets[cols[0] - 1]
        if text[a:b].strip():
            break
        cols.insert(0, cols[0] - 1)
    return cols


@pytest.mark.parametrize("fixture", FAMILY_DIRS)
def test_every_word_gets_a_vector_from_its_own_pieces(fixture, request, tmp_path):
    """Each type vector (one occurrence) is the mean of the word's own subwords' states when the
    sentence is encoded as running text, for every layer, whatever the tokenizer family."""
    folder = request.getfixturevalue(fixture)
    model = AutoModel.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    n_layers = model.config.num_hidden_layers
    config = TypeVectorConfig(
        encoder=str(folder), lowercase=False, max_occurrences=1, layers=tuple(range(n_layers + 1)), bf16=False
    )
    layers = type_vectors(FAMILY_SENTENCES, config, cache_dir=tmp_path, progress=False)
    every_word = {w for s in FAMILY_SENTENCES for w in s.words}
    assert all(set(emb.words) == every_word for emb in layers.values())
    for sentence in FAMILY_SENTENCES[:2]:  # no subword spans two words: the encoder sees running text
        text = " ".join(sentence.words)
        enc = tok(text, return_offsets_mapping=True, return_tensors="pt")
        offsets = enc.pop("offset_mapping")[0].tolist()
        with torch.no_grad():
            hidden = model(**enc, output_hidden_states=True).hidden_states
        start = 0
        for word in sentence.words:
            cols = _running_text_columns(text, offsets, start, start + len(word))
            start += len(word) + 1
            assert tok.decode(enc["input_ids"][0, cols]).strip() == word  # its own pieces, no neighbour's
            for layer, emb in layers.items():
                expected = hidden[layer][0, cols].mean(0).numpy()
                got = emb.vectors[emb.words.index(word)]
                np.testing.assert_allclose(got, expected, rtol=2e-3, atol=2e-3, err_msg=f"{word} {layer}")


def test_the_cache_key_changes_with_the_encoder(tiny_xlmr_dir, tiny_deberta_dir, tiny_gemma_dir, tmp_path):
    from conftest import build_tiny_gemma

    rebuilt = build_tiny_gemma(tmp_path / "gemma", seed=1)
    folders = [tiny_xlmr_dir, tiny_deberta_dir, tiny_gemma_dir, rebuilt]
    configs = [TypeVectorConfig(encoder=str(f), layers=(1, 2), bf16=False) for f in folders]
    cache = tmp_path / "cache"
    first = [type_vectors(FAMILY_SENTENCES, c, cache_dir=cache, progress=False) for c in configs]
    assert len(list((cache / "type-embeddings").glob("*.npz"))) == len(folders)
    assert not np.allclose(first[2][2].vectors, first[3][2].vectors)  # same architecture, other weights
    # the same folder with new weights (another size or time stamp) is another entry too
    build_tiny_gemma(rebuilt, seed=2, layers=4)
    for path in rebuilt.iterdir():
        os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 10))
    again = type_vectors(FAMILY_SENTENCES, configs[3], cache_dir=cache, progress=False)
    assert len(list((cache / "type-embeddings").glob("*.npz"))) == len(folders) + 1
    assert not np.allclose(again[2].vectors, first[3][2].vectors)


@pytest.mark.parametrize("fixture", FAMILY_DIRS)
def test_long_sentences_are_cut_at_max_length_like_the_tokenizer(fixture, request):
    """At most `max_length` ids with the end token kept; words past the cut have no columns, and every
    column a word has holds one of its own subwords."""
    tok = AutoTokenizer.from_pretrained(request.getfixturevalue(fixture))
    sentence = FAMILY_SENTENCES[1]
    (full_ids, full_cols), (ids, cols) = (
        encoder_vectors.encode_words(tok, [sentence], n)[0] for n in (512, 8)
    )
    assert len(ids) == 8 and ids[-1] == full_ids[-1] and ids[:-1] == full_ids[:7]
    assert all(c < 7 for word in cols for c in word) and not cols[-1]
    assert [w[: len(c)] for w, c in zip(full_cols, cols, strict=True)] == cols
    assert all(full_cols)  # with room, every word has its subwords
