"""Word → subword alignment and windowing of long sentences.

Written by hand because the Hugging Face recipe (`truncation=True, max_length=128`) silently drops every
word past the limit (118 Spanish and 535 Dutch test words with me5-small), and a tokenizer's
`return_overflowing_tokens` splits inside words and does not say which window should answer for a word.
Here a sentence longer than the limit becomes overlapping windows cut at word boundaries, and each word is
*owned* by exactly one window: the one giving it the most context (largest min(left, right) subwords).
Only an owned word's first subword carries its label in training and its prediction at inference.

A word that tokenizes to nothing (e.g. a lone zero-width or control character) gets the tokenizer's
unknown token, so it still has a first subword and gets a prediction.

Words → subwords, for every tokenizer family. Tokenizers that mark word starts themselves (WordPiece's
`##`, SentencePiece-Unigram's Metaspace `▁` in XLM-R, mDeBERTa and E5) are run with
`is_split_into_words=True`, as the Hugging Face recipe does. Tokenizers without that marker (Gemma's
SentencePiece-BPE: a normalizer turns spaces into `▁`, nothing adds one per word) would see each word
without its leading `▁` that way, i.e. cut differently from running text. For those the words are joined
with single spaces, as running text, and each subword goes to the word its character offsets fall in (a
space-only subword to the next word); should one subword span two words, that sentence's words are
tokenized one by one (each after a space), so every word still has its own first subword.
`splits_like_text` decides, per tokenizer, by tokenizing a probe sentence both ways.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from unitrans.data import Sentence
from unitrans.model.runtime import quiet_transformers


@dataclass(frozen=True, slots=True)
class Window:
    """One encoder input: a slice of a sentence wrapped in the tokenizer's special tokens.

    `positions[i]` is the index (in `input_ids`) of the first subword of sentence word `word_ids[i]`;
    only the words this window owns are listed.
    """

    sentence: int
    input_ids: np.ndarray  # (T,) int64, special tokens included
    positions: np.ndarray  # (n_owned,) int64
    word_ids: np.ndarray  # (n_owned,) int64, indices into the sentence's words

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True, slots=True)
class SpecialTokens:
    """Ids the tokenizer puts before and after a single sequence (e.g. [CLS] … [SEP], <s> … </s>)."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    unk: int


def special_tokens(tokenizer) -> SpecialTokens:
    """Find the tokenizer's single-sequence template by encoding one word and looking around it."""
    try:
        enc = tokenizer(["a"], is_split_into_words=True, add_special_tokens=True)
    except (ValueError, TypeError):  # e.g. a byte-level BPE without add_prefix_space refuses split words
        enc = tokenizer("a", add_special_tokens=True)
    ids, wids = enc["input_ids"], enc.word_ids()
    content = [i for i, w in enumerate(wids) if w is not None]
    first, last = (content[0], content[-1]) if content else (len(ids), len(ids) - 1)
    unk = tokenizer.unk_token_id
    if unk is None:
        raise ValueError("the tokenizer has no unknown token; words that tokenize to nothing need one")
    return SpecialTokens(tuple(ids[:first]), tuple(ids[last + 1 :]), int(unk))


PROBE = ("John", "Smith", "visited", "the", "a", "Madrid", "1", ",", "é", "München", ".")


def splits_like_text(tokenizer) -> bool:
    """Whether `is_split_into_words=True` gives every word the subwords it gets in running text."""
    probe = [Sentence(PROBE)]
    try:
        split = _split_pieces(tokenizer, probe, 0)
    except (ValueError, TypeError):
        return False
    return split == _text_pieces(tokenizer, probe, 0)


def word_pieces(tokenizer, sentences: Sequence[Sentence], unk: int) -> list[list[list[int]]]:
    """Subword ids of every word of every sentence, as the encoder sees the sentence as running text.

    Each word gets at least one subword (`unk` when it tokenizes to nothing); see the module docstring.
    """
    if not sentences:
        return []
    if splits_like_text(tokenizer):
        return _split_pieces(tokenizer, sentences, unk)
    return _text_pieces(tokenizer, sentences, unk)


def _split_pieces(tokenizer, sentences: Sequence[Sentence], unk: int) -> list[list[list[int]]]:
    """Tokenized as the HF recipe does (split into words); the path for tokenizers with word markers."""
    with quiet_transformers():  # long sentences are windowed below, not truncated
        enc = tokenizer(
            [list(s.words) for s in sentences],
            is_split_into_words=True,
            add_special_tokens=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
    out: list[list[list[int]]] = []
    for k, sentence in enumerate(sentences):
        pieces: list[list[int]] = [[] for _ in sentence.words]
        for token_id, w in zip(enc["input_ids"][k], enc.word_ids(k), strict=True):
            if w is not None:
                pieces[w].append(token_id)
        out.append([p if p else [unk] for p in pieces])
    return out


def _text_pieces(tokenizer, sentences: Sequence[Sentence], unk: int) -> list[list[list[int]]]:
    """Words joined by single spaces, tokenized as text, subwords assigned by character offsets."""
    with quiet_transformers():
        enc = tokenizer(
            [" ".join(s.words) for s in sentences],
            add_special_tokens=False,
            return_offsets_mapping=True,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
    out: list[list[list[int]]] = []
    for k, sentence in enumerate(sentences):
        pieces = _assign(sentence.words, enc["input_ids"][k], enc["offset_mapping"][k])
        if pieces is None:
            pieces = _one_by_one(tokenizer, sentence.words)
        out.append([p if p else [unk] for p in pieces])
    return out


def _assign(words: Sequence[str], ids: Sequence[int], offsets) -> list[list[int]] | None:
    """Subwords per word by character offsets in " ".join(words); None if a subword spans two words.

    A subword overlapping no word (a lone `▁` before a word that starts with a rare character) belongs
    to the next word, as `is_split_into_words` would give it in Metaspace tokenizers.
    """
    starts, ends, pos = [], [], 0
    for word in words:
        starts.append(pos)
        ends.append(pos + len(word))
        pos += len(word) + 1
    pieces: list[list[int]] = [[] for _ in words]
    pending: list[int] = []
    for token_id, (a, b) in zip(ids, offsets, strict=True):
        w = bisect_right(ends, a)  # the first word ending after the subword starts
        if w >= len(words) or starts[w] >= b:  # overlaps no word: whitespace, or an empty span
            pending.append(token_id)
            continue
        if w + 1 < len(words) and b > starts[w + 1]:
            return None
        pieces[w].extend(pending)
        pending = []
        pieces[w].append(token_id)
    if pending and words:
        pieces[-1].extend(pending)
    return pieces


def _one_by_one(tokenizer, words: Sequence[str]) -> list[list[int]]:
    """Each word tokenized alone, after a space except the first: one first subword per word for sure."""
    texts = [word if i == 0 else " " + word for i, word in enumerate(words)]
    with quiet_transformers():
        enc = tokenizer(
            texts, add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False
        )
    return [list(ids) for ids in enc["input_ids"]]


def split_windows(
    pieces: Sequence[Sequence[int]], budget: int, stride: int
) -> list[tuple[int, int, list[int]]]:
    """Cut one sentence's words into windows of at most `budget` subwords.

    Returns (first word, end word, owned words) per window. Consecutive windows start about `stride`
    subwords apart and overlap, so no word is left out; each word is owned by one window.
    """
    n = len(pieces)
    if n == 0:
        return []
    sizes = np.fromiter((min(len(p), budget) for p in pieces), dtype=np.int64, count=n)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    spans: list[tuple[int, int]] = []
    start = 0
    while True:
        end = int(np.searchsorted(offsets, offsets[start] + budget, side="right")) - 1
        end = max(end, start + 1)
        spans.append((start, end))
        if end >= n:
            break
        target = offsets[start] + stride
        nxt = int(np.searchsorted(offsets, target, side="left"))
        start = min(max(nxt, start + 1), end)
    best_score = np.full(n, -1, dtype=np.int64)
    owner = np.zeros(n, dtype=np.int64)
    for j, (a, b) in enumerate(spans):
        words = np.arange(a, b)
        score = np.minimum(offsets[words] - offsets[a], offsets[b] - offsets[words + 1])
        better = score > best_score[a:b]
        best_score[a:b] = np.where(better, score, best_score[a:b])
        owner[a:b] = np.where(better, j, owner[a:b])
    return [(a, b, np.flatnonzero(owner == j).tolist()) for j, (a, b) in enumerate(spans)]


def make_windows(
    tokenizer, sentences: Sequence[Sentence], max_length: int, *, specials: SpecialTokens | None = None
) -> list[Window]:
    """All windows of all sentences; every word of every sentence is owned by exactly one window."""
    specials = specials or special_tokens(tokenizer)
    budget = max_length - len(specials.prefix) - len(specials.suffix)
    if budget < 1:
        raise ValueError(f"max_length {max_length} leaves no room for words after the special tokens")
    stride = max(1, budget // 2)
    windows: list[Window] = []
    for k, pieces in enumerate(word_pieces(tokenizer, sentences, specials.unk)):
        for a, b, owned in split_windows(pieces, budget, stride):
            ids = list(specials.prefix)
            first: dict[int, int] = {}
            for w in range(a, b):
                first[w] = len(ids)
                ids.extend(pieces[w][:budget])
            ids.extend(specials.suffix)
            windows.append(
                Window(
                    sentence=k,
                    input_ids=np.asarray(ids, dtype=np.int64),
                    positions=np.asarray([first[w] for w in owned], dtype=np.int64),
                    word_ids=np.asarray(owned, dtype=np.int64),
                )
            )
    return windows
