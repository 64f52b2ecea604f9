"""Every encoder family the tagger supports, each as a tiny in-process model with its real tokenizer class:
BERT (WordPiece-style), XLM-R and DeBERTa-v2 (SentencePiece-Unigram), Gemma-3 bidirectional (BPE without
word-start markers, our own head). Alignment, freezing, the split forward, save/load, windows, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_FAMILIES, tiny_train_sentences
from unitrans.cli import main
from unitrans.data import CONLL_LABELS, Sentence
from unitrans.errors import UnitransError
from unitrans.model.architectures import family_of
from unitrans.model.heads import HEAD_FILE
from unitrans.model.predict import model_labels, predict_loaded, predict_probs
from unitrans.model.tagger import (
    embed,
    freeze_bottom,
    frozen_states,
    load_tagger,
    num_layers,
    read_metadata,
    save_tagger,
    word_logits,
)
from unitrans.model.windows import make_windows, special_tokens, splits_like_text, word_pieces
from unitrans.train.batching import flat_positions, pad_ids
from unitrans.train.supervised import TrainConfig, train_tagger

FAMILIES = TINY_FAMILIES
TRAIN = tiny_train_sentences() * 4
TRICKY = [
    Sentence(("John", "Smith", "visited", "Madrid", ".")),
    Sentence(("Juan", "vive", "en", "München", ",", "2020", "€", "x" * 30, "l'empresa")),
    Sentence(("the", "capital", "of", "the", "EU", "is", "Brussels")),  # Gemma's `▁of▁the` spans two words
    Sentence(("a",)),
]
LONG = Sentence(tuple(("Mary met John Smith in the city of London and visited Paris , Madrid").split() * 5))


def config(encoder: Path, **kw) -> TrainConfig:
    base = dict(encoder=str(encoder), epochs=2, batch_size=4, freeze_layers=1, max_length=16, lr=1e-2)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(params=list(FAMILIES))
def encoder_dir(request) -> Path:
    return request.getfixturevalue(FAMILIES[request.param])


@pytest.fixture(scope="module", params=list(FAMILIES))
def trained(request, tmp_path_factory) -> Path:
    """A tagger of each family trained briefly (freeze_layers=1)."""
    folder = request.getfixturevalue(FAMILIES[request.param])
    out = tmp_path_factory.mktemp(f"trained-{request.param}") / "model"
    return train_tagger(TRAIN, out, config(folder), progress=False)


def _tokenizer(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, trust_remote_code=False)


# --- alignment -------------------------------------------------------------------------------------------


def test_every_word_gets_exactly_one_first_subword(encoder_dir):
    tokenizer = _tokenizer(encoder_dir)
    unk = special_tokens(tokenizer).unk
    for sentence, pieces in zip(TRICKY, word_pieces(tokenizer, TRICKY, unk), strict=True):
        assert len(pieces) == len(sentence.words)
        assert all(len(p) >= 1 for p in pieces), pieces
    windows = make_windows(tokenizer, [*TRICKY, LONG], max_length=12)
    owned: dict[int, list[int]] = {}
    for w in windows:
        assert len(w) <= 12
        owned.setdefault(w.sentence, []).extend(w.word_ids.tolist())
    for k, sentence in enumerate([*TRICKY, LONG]):
        assert sorted(owned[k]) == list(range(len(sentence.words)))  # each word owned by exactly one window


def test_subwords_are_those_of_running_text(encoder_dir):
    """Joined, the words' subwords are exactly the tokenization of the sentence as text (where no piece
    spans two words), so the encoder sees what it saw in pre-training."""
    tokenizer = _tokenizer(encoder_dir)
    unk = special_tokens(tokenizer).unk
    sentences = [TRICKY[0], TRICKY[1], LONG]
    for sentence, pieces in zip(sentences, word_pieces(tokenizer, sentences, unk), strict=True):
        text = tokenizer(" ".join(sentence.words), add_special_tokens=False)["input_ids"]
        assert [i for p in pieces for i in p] == text


def test_markerless_tokenizers_are_aligned_by_offsets(tiny_gemma_dir, tiny_xlmr_dir, tiny_deberta_dir):
    gemma = _tokenizer(tiny_gemma_dir)
    assert not splits_like_text(gemma)
    assert splits_like_text(_tokenizer(tiny_xlmr_dir)) and splits_like_text(_tokenizer(tiny_deberta_dir))
    words = ("John", "visited", "Madrid")
    pieces = word_pieces(gemma, [Sentence(words)], special_tokens(gemma).unk)[0]
    assert gemma.convert_ids_to_tokens(pieces[2]) == ["▁Madrid"]  # the word-start marker, as in text
    split = gemma(list(words), is_split_into_words=True, add_special_tokens=False)
    assert gemma.convert_ids_to_tokens(split["input_ids"])[-1] == "Madrid"  # what split words would give


def test_a_piece_spanning_two_words_falls_back_to_word_by_word(tiny_gemma_dir):
    gemma = _tokenizer(tiny_gemma_dir)
    sentence = TRICKY[2]
    assert "▁of▁the" in gemma.tokenize(" ".join(sentence.words))
    pieces = word_pieces(gemma, [sentence], special_tokens(gemma).unk)[0]
    tokens = [gemma.convert_ids_to_tokens(p) for p in pieces]
    assert tokens[2] == ["▁of"] and tokens[3] == ["▁the"]
    alone = [
        gemma(w if i == 0 else " " + w, add_special_tokens=False)["input_ids"]
        for i, w in enumerate(sentence.words)
    ]
    assert pieces == alone


# --- freezing and the split forward ----------------------------------------------------------------------


def _batch(model, tokenizer, sentences, max_length=12):
    windows = make_windows(tokenizer, sentences, max_length)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids, mask = pad_ids([w.input_ids for w in windows], pad)
    where = flat_positions([w.positions for w in windows], ids.shape[1])
    return windows, ids, mask, where


@torch.no_grad()
def test_split_forward_equals_the_full_forward(encoder_dir):
    model, tokenizer = load_tagger(encoder_dir, CONLL_LABELS)
    model.eval()
    windows, ids, mask, where = _batch(model, tokenizer, [*TRICKY, LONG])
    assert int(mask.sum()) < mask.numel()  # padded rows: masks must hide the pads
    full = model(input_ids=ids, attention_mask=mask).logits.reshape(-1, len(CONLL_LABELS))[where]
    torch.testing.assert_close(word_logits(model, embed(model, ids), mask, 0, where), full)
    lengths = [len(w) for w in windows]
    for k in range(num_layers(model) + 1):
        states = frozen_states(model, ids, mask, k)
        torch.testing.assert_close(word_logits(model, states, mask, k, where), full)
        # the training cache keeps unpadded rows and pads them again with zeros
        cached = [states[i, :n].clone() for i, n in enumerate(lengths)]
        repadded = torch.nn.utils.rnn.pad_sequence(cached, batch_first=True)
        torch.testing.assert_close(word_logits(model, repadded, mask, k, where), full)


def test_training_leaves_frozen_weights_unchanged(encoder_dir, tmp_path):
    out = train_tagger(TRAIN, tmp_path / "m", config(encoder_dir, epochs=1), progress=False)
    fresh, _ = load_tagger(encoder_dir, CONLL_LABELS)
    freeze_bottom(fresh, 1)
    base = fresh.base_model
    for module in family_of(base).embeddings(base):  # DeBERTa's relative embeddings included
        assert not any(p.requires_grad for p in module.parameters())
    after = dict(load_tagger(out)[0].named_parameters())
    frozen = {n for n, p in fresh.named_parameters() if not p.requires_grad}
    moved = {n for n, p in fresh.named_parameters() if not torch.equal(p, after[n])}
    assert frozen and not frozen & moved
    top = family_of(base).layers(base)[-1]
    top_names = {n for n, p in fresh.named_parameters() if any(p is q for q in top.parameters())}
    assert top_names & moved  # the trainable top layer did train


# --- checkpoints -----------------------------------------------------------------------------------------


def test_save_and_reload_give_identical_predictions(trained, tmp_path):
    model, tokenizer = load_tagger(trained)
    before = predict_loaded(model, tokenizer, [*TRICKY, LONG], max_length=16, progress=False)
    copy = save_tagger(model, tokenizer, tmp_path / "copy", read_metadata(trained))
    for folder in (trained, copy):
        after = predict_probs(folder, [*TRICKY, LONG], progress=False)
        assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert model_labels(copy) == list(CONLL_LABELS)
    config = json.loads((copy / "config.json").read_text())
    assert "auto_map" not in config


def test_head_dropout_survives_a_reload_and_follows_a_training_request(encoder_dir, tmp_path):
    """DeBERTa-v2's config has no head-dropout field: a reload used to bring back its default."""
    out = train_tagger(TRAIN[:4], tmp_path / "m", config(encoder_dir, epochs=1, dropout=0.37), progress=False)
    model, _ = load_tagger(out)
    assert model.dropout.p == pytest.approx(0.37)
    model, _ = load_tagger(out, list(CONLL_LABELS), dropout=0.21)  # Θteach from Θsrc, its own dropout
    assert model.dropout.p == pytest.approx(0.21)


@pytest.mark.filterwarnings("ignore:Cannot enable progress bars")  # the hub read the CLI's env at import
def test_loading_and_saving_print_no_transformers_bars(trained, tmp_path, capfd, monkeypatch):
    """A run's stage lines are not interleaved with "Loading weights" / "Writing model shards" bars."""
    from transformers.utils import logging as hf_logging

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)  # the CLI sets it; a library user not
    was = hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()  # as in a library user's process (the CLI turns hub bars off)
    try:
        model, tokenizer = load_tagger(trained)
        save_tagger(model, tokenizer, tmp_path / "copy", read_metadata(trained))
        assert hf_logging.is_progress_bar_enabled()  # restored for the caller
    finally:
        if not was:
            hf_logging.disable_progress_bar()
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "Writing model shards" not in err


def test_transformers_loads_the_checkpoint_where_it_has_a_class(trained):
    from transformers import AutoModel, AutoModelForTokenClassification, pipeline

    model, tokenizer = load_tagger(trained)
    model.eval()
    enc = tokenizer("John Smith visited Madrid .", return_tensors="pt")
    ours = model(**enc).logits
    if (trained / HEAD_FILE).is_file():  # Gemma: our head beside a plain encoder folder
        with pytest.raises(ValueError):
            AutoModelForTokenClassification.from_pretrained(trained, trust_remote_code=False)
        encoder = AutoModel.from_pretrained(trained, trust_remote_code=False).eval()
        assert type(encoder).__name__ == "Gemma3TextModel"
        torch.testing.assert_close(model.classifier(encoder(**enc).last_hidden_state), ours)
        return
    theirs = AutoModelForTokenClassification.from_pretrained(trained, trust_remote_code=False).eval()
    torch.testing.assert_close(theirs(**enc).logits, ours)
    entities = pipeline("token-classification", model=str(trained), device="cpu")(
        "John Smith visited Madrid ."
    )
    assert isinstance(entities, list)


def test_predict_and_tag_commands_load_every_family(trained, tmp_path, capsys):
    text = tmp_path / "in.txt"
    text.write_text("John Smith visited Madrid .\n\nGoogle said .\n", encoding="utf-8")
    conll = tmp_path / "in.conll"
    conll.write_text("John\nvisited\nMadrid\n\nGoogle\nsaid\n", encoding="utf-8")
    out = tmp_path / "pred.txt"
    assert main(["predict", "--model", str(trained), "--input", str(conll), "--out", str(out)]) == 0
    blocks = out.read_text(encoding="utf-8").strip().split("\n\n")
    assert [len(b.splitlines()) for b in blocks] == [3, 2]
    capsys.readouterr()
    assert main(["tag", "--model", str(trained), "--quiet", str(text)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(json.loads(line)["text"] is not None for line in lines)


# --- windows ---------------------------------------------------------------------------------------------


def test_long_sentences_are_windowed_and_every_word_predicted(trained):
    """In fp32 (bf16 results depend on the batch's shapes by a few 1e-4)."""
    model, tokenizer = load_tagger(trained)
    short, long = TRICKY[0], LONG
    assert len(make_windows(tokenizer, [long], 16)) > 1
    alone = predict_loaded(model, tokenizer, [short], max_length=16, progress=False, bf16=False)[0]
    probs = predict_loaded(model, tokenizer, [long, short, long], max_length=16, progress=False, bf16=False)
    assert [p.shape for p in probs] == [(len(long), 9), (len(short), 9), (len(long), 9)]
    for p in probs:
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(probs[1], alone, atol=1e-6)  # a sentence's result ignores its batch-mates
    np.testing.assert_array_equal(probs[0], probs[2])
    wide = predict_loaded(model, tokenizer, [short], max_length=128, progress=False, bf16=False)[0]
    np.testing.assert_allclose(wide, alone, atol=1e-6)  # fits one window either way: same result


# --- what is refused -------------------------------------------------------------------------------------


def test_an_unsupported_architecture_is_one_line(tiny_encoder_dir, tmp_path, capsys):
    from transformers import DistilBertConfig, DistilBertModel

    folder = tmp_path / "distil"
    config = DistilBertConfig(vocab_size=80, dim=32, n_layers=1, n_heads=2, hidden_dim=64)
    DistilBertModel(config).save_pretrained(folder)
    with pytest.raises(UnitransError, match="'distilbert' is not supported by the tagger"):
        load_tagger(folder, CONLL_LABELS)
    train = tmp_path / "train.txt"
    train.write_text("John B-PER\nsaid O\n", encoding="utf-8")
    capsys.readouterr()  # the set-up's own save may print a progress bar (whether depends on earlier tests)
    assert main(["train", "--train", str(train), "--out", str(tmp_path / "m"), "--encoder", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not supported by the tagger" in err[0]


def test_a_missing_or_broken_own_head_is_one_line(tiny_gemma_dir, tmp_path):
    import shutil

    from unitrans.model.tagger import check_tagger_folder

    folder = train_tagger(TRAIN[:4], tmp_path / "g", config(tiny_gemma_dir, epochs=1), progress=False)
    head = folder / HEAD_FILE
    head.write_bytes(head.read_bytes()[:40])  # truncated
    with pytest.raises(UnitransError, match="cannot load the model"):
        load_tagger(folder)
    head.unlink()
    with pytest.raises(UnitransError, match="no token-classification head"):
        check_tagger_folder(folder)
    shutil.rmtree(folder)
