"""Word/subword alignment and windowing: every word gets exactly one first subword in one window."""

from __future__ import annotations

import numpy as np
import pytest
from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece
from transformers import PreTrainedTokenizerFast

from unitrans.data import Sentence
from unitrans.model.windows import make_windows, special_tokens, split_windows, word_pieces

PIECES = "[PAD] [UNK] [CLS] [SEP] john smith mad ##rid ##s vis ##ited . lon ##don".split()


@pytest.fixture(scope="module")
def wordpiece_tokenizer() -> PreTrainedTokenizerFast:
    """A BERT-style tokenizer whose words split into several subwords; BertNormalizer deletes
    zero-width and control characters, so a word made only of them tokenizes to nothing."""
    vocab = {w: i for i, w in enumerate(PIECES)}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )


def test_first_subword_of_each_word_is_aligned(wordpiece_tokenizer):
    tok = wordpiece_tokenizer
    sentence = Sentence(("John", "visited", "Madrids", "London", "."))
    (window,) = make_windows(tok, [sentence], max_length=32)
    ids = window.input_ids.tolist()
    assert tok.convert_ids_to_tokens(ids) == [
        "[CLS]", "john", "vis", "##ited", "mad", "##rid", "##s", "lon", "##don", ".", "[SEP]"
    ]  # fmt: skip
    assert window.word_ids.tolist() == [0, 1, 2, 3, 4]
    assert window.positions.tolist() == [1, 2, 4, 7, 9]
    firsts = tok.convert_ids_to_tokens([ids[p] for p in window.positions])
    assert firsts == ["john", "vis", "mad", "lon", "."]


def test_word_that_tokenizes_to_nothing_gets_the_unknown_token(wordpiece_tokenizer):
    tok = wordpiece_tokenizer
    assert tok(["\u200b"], is_split_into_words=True, add_special_tokens=False)["input_ids"] == []
    sentence = Sentence(("John", "\u200b", "\x07", "London"))
    pieces = word_pieces(tok, [sentence], tok.unk_token_id)[0]
    assert pieces[1] == [tok.unk_token_id] and pieces[2] == [tok.unk_token_id]
    (window,) = make_windows(tok, [sentence], max_length=32)
    assert window.word_ids.tolist() == [0, 1, 2, 3]
    assert [window.input_ids[p] for p in window.positions[1:3]] == [tok.unk_token_id] * 2


def test_special_tokens_found_from_the_template(wordpiece_tokenizer):
    specials = special_tokens(wordpiece_tokenizer)
    assert specials.prefix == (PIECES.index("[CLS]"),)
    assert specials.suffix == (PIECES.index("[SEP]"),)


@pytest.mark.parametrize("seed", range(5))
def test_split_windows_owns_each_word_once_with_most_context(seed):
    rng = np.random.default_rng(seed)
    pieces = [[0] * int(n) for n in rng.integers(1, 6, size=300)]
    budget, stride = 40, 20
    windows = split_windows(pieces, budget, stride)
    owned = sorted(w for _, _, ws in windows for w in ws)
    assert owned == list(range(len(pieces)))
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in pieces])])
    for a, b, ws in windows:
        assert offsets[b] - offsets[a] <= budget
        assert all(a <= w < b for w in ws)

    def context(w, a, b):
        return min(offsets[w] - offsets[a], offsets[b] - offsets[w + 1])

    for a, b, ws in windows:
        for w in ws:
            best = max(context(w, a2, b2) for a2, b2, _ in windows if a2 <= w < b2)
            assert context(w, a, b) == best


def test_split_windows_keeps_a_word_longer_than_the_budget():
    windows = split_windows([[1] * 3, [2] * 50, [3] * 2], budget=10, stride=5)
    assert sorted(w for _, _, ws in windows for w in ws) == [0, 1, 2]


def test_2000_word_sentence_every_word_exactly_one_window(tiny_encoder_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_encoder_dir)
    words = tuple(["john", "visited", "madrid", "."] * 500)
    windows = make_windows(tok, [Sentence(words)], max_length=128)
    assert len(windows) > 1 and all(len(w) <= 128 for w in windows)
    owned = np.concatenate([w.word_ids for w in windows])
    assert sorted(owned.tolist()) == list(range(2000))
    for w in windows:  # an owned word's first subword is that word
        expected = tok.convert_tokens_to_ids([words[i] for i in w.word_ids])
        assert w.input_ids[w.positions].tolist() == expected
