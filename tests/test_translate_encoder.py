import json
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
