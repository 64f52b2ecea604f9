"""Static word-type embeddings derived from a multilingual encoder (the default: no fastText offline).

Each word type of a corpus gets the mean, over up to `max_occurrences` of its occurrences, of the
encoder's contextual vector for that occurrence (the mean of its subword vectors) at a given layer.
Several layers are collected in one pass; which one is used is decided later without labels or
dictionaries (`alignment.select_and_align`).

Types are lowercased by default: "The"/"the" and "Madrid"/"MADRID" pool their occurrences (more
contexts per type, and bilingual dictionaries are lowercase), while the casing of each translated token
is restored by the translation policy. `lowercase=False` keeps case-sensitive types.

Words become subwords exactly as in the tagger (`unitrans.model.windows.word_pieces`): split into words
for tokenizers that mark word starts (WordPiece, XLM-R/E5/mDeBERTa SentencePiece), joined as running text
and aligned by character offsets for those that do not (Gemma), so each occurrence's vector is the mean of
that word's own subwords in the context the encoder was trained on. The layers are the model's own
`hidden_states` (0 = embeddings, the last one after any final norm, as `last_hidden_state`), so any
`AutoModel` encoder works, Gemma-3 included. A sentence longer than `max_length` subwords is cut there
(a word cut in two keeps the subwords before the cut); words past the cut, or that tokenize to nothing, are
not collected from that occurrence.

Sentences are chosen greedily in corpus order so that each type gets its first `max_occurrences`
occurrences; sentences with nothing left to collect are never encoded. Results are cached in
`$UNITRANS_CACHE/type-embeddings` (default ~/.cache/unitrans), keyed by encoder, corpus and settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from unitrans.data import Sentence
from unitrans.errors import UnitransError
from unitrans.translate.embeddings import WordEmbeddings, load_npz, save_npz

logger = logging.getLogger(__name__)
CACHE_FORMAT = 1
NO_PIECES = -1  # stands in (as `word_pieces`' unknown id) for a word that tokenizes to nothing


@dataclass(frozen=True)
class TypeVectorConfig:
    """How static type vectors are derived from an encoder."""

    encoder: str = field(default="me5-small", metadata={"help": "Encoder name or local HF folder."})
    layers: tuple[int, ...] | None = field(
        default=None,
        metadata={
            "help": "Hidden-state indices to collect (0 = embeddings); default: every second layer "
            "from a third of the depth up to the last."
        },
    )
    max_occurrences: int = field(default=30, metadata={"help": "Occurrences averaged per type (cap)."})
    lowercase: bool = field(default=True, metadata={"help": "Pool case variants into lowercased types."})
    max_vocab: int = field(default=200_000, metadata={"help": "Keep the most frequent types only."})
    batch_tokens: int = field(default=8192, metadata={"help": "Subword tokens per encoder batch."})
    max_length: int = field(default=256, metadata={"help": "Subword limit per sentence (rest skipped)."})
    bf16: bool | None = field(default=None, metadata={"help": "bf16 autocast; None = where native."})

    def __post_init__(self) -> None:
        if self.max_occurrences < 1 or self.max_vocab < 1 or self.batch_tokens < 1 or self.max_length < 4:
            raise UnitransError("max_occurrences, max_vocab, batch_tokens must be >= 1, max_length >= 4")


def type_key(word: str, lowercase: bool) -> str:
    return word.lower() if lowercase else word


def default_cache_root() -> Path:
    env = os.environ.get("UNITRANS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "unitrans"


def frequency_vocab(
    sentences: Sequence[Sentence], lowercase: bool, max_vocab: int
) -> tuple[list[str], Counter]:
    """Types by decreasing frequency, ties by first occurrence (Counter keeps insertion order)."""
    counts = Counter(type_key(w, lowercase) for s in sentences for w in s.words)
    vocab = [w for w, _ in sorted(counts.items(), key=lambda kv: -kv[1])][:max_vocab]
    return vocab, counts


def _cache_key(
    folder: Path,
    sentences: Sequence[Sentence],
    config: TypeVectorConfig,
    layers: Sequence[int],
    by_offsets: bool,
) -> str:
    h = hashlib.sha256()
    settings = {k: v for k, v in asdict(config).items() if k != "batch_tokens"}  # batching: same result
    if by_offsets:  # format-1 entries of tokenizers with word markers stay valid: their pieces are unchanged
        settings["alignment"] = "offsets"
    h.update(
        json.dumps({"format": CACHE_FORMAT, **settings, "layers": list(layers)}, sort_keys=True).encode()
    )
    h.update(str(folder).encode())
    for name in sorted(p.name for p in folder.iterdir() if p.is_file()):
        stat = (folder / name).stat()
        h.update(f"{name}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    for s in sentences:
        h.update("\x1f".join(s.words).encode("utf-8"))
        h.update(b"\x1e")
    return h.hexdigest()[:24]


def default_layers(num_layers: int) -> tuple[int, ...]:
    return tuple(range(num_layers, max(num_layers // 3, 1) - 1, -2))[::-1]


def type_vectors(
    sentences: Sequence[Sentence],
    config: TypeVectorConfig,
    *,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> dict[int, WordEmbeddings]:
    """Per collected layer, the type embeddings of `sentences` (frequency order); cached on disk."""
    from transformers import AutoConfig

    from unitrans.model.encoders import check_model_folder, resolve_encoder
    from unitrans.model.windows import splits_like_text

    folder = resolve_encoder(config.encoder)
    check_model_folder(folder)  # custom code (auto_map) is refused before transformers reads the folder
    try:
        n_layers = int(AutoConfig.from_pretrained(folder, trust_remote_code=False).num_hidden_layers)
    except (OSError, ValueError, TypeError, AttributeError) as err:
        raise UnitransError(f"{folder}: not a usable encoder config ({err})") from None
    layers = config.layers if config.layers is not None else default_layers(n_layers)
    if any(not 0 <= x <= n_layers for x in layers):
        raise UnitransError(f"layers {layers} out of range: {config.encoder} has hidden states 0..{n_layers}")
    tokenizer = _load_tokenizer(folder)
    by_offsets = not splits_like_text(tokenizer)
    root = cache_dir if cache_dir is not None else default_cache_root()
    path = root / "type-embeddings" / f"{_cache_key(folder, sentences, config, layers, by_offsets)}.npz"
    if path.is_file():
        try:  # zip members carry CRC-32s: truncation or flipped bytes fail here, never reach a lexicon
            cached = load_npz(path)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            logger.warning("%s: damaged type-embedding cache (%s); rebuilding it", path, err)
        else:
            logger.info("type embeddings from cache %s", path)
            return {int(k): v for k, v in cached.items()}
    vectors = _extract(folder, tokenizer, sentences, config, layers, progress)
    save_npz(path, {str(k): v for k, v in vectors.items()})
    logger.info("type embeddings cached at %s", path)
    return {int(k): v for k, v in load_npz(path).items()}  # the cached float16 values, as on later runs


def _wanted_positions(sentences: Sequence[Sentence], index: dict[str, int], config: TypeVectorConfig):
    """(sentence index, [(word position, type id)]) for the first `max_occurrences` of each type."""
    taken = np.zeros(len(index), dtype=np.int64)
    plan: list[tuple[int, list[tuple[int, int]]]] = []
    for si, sent in enumerate(sentences):
        wanted = []
        for wi, word in enumerate(sent.words):
            tid = index.get(type_key(word, config.lowercase))
            if tid is not None and taken[tid] < config.max_occurrences:
                taken[tid] += 1
                wanted.append((wi, tid))
        if wanted:
            plan.append((si, wanted))
    return plan


def _load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    except (OSError, ValueError, TypeError) as err:
        raise UnitransError(f"{folder}: not a usable tokenizer ({err})") from None


def encode_words(
    tokenizer, sentences: Sequence[Sentence], max_length: int
) -> list[tuple[list[int], list[list[int]]]]:
    """Per sentence: encoder input ids (special tokens included, at most `max_length`) and, per word, the
    columns of its own subwords that fit (as with the tokenizer's truncation); none past the cut."""
    from unitrans.model.windows import special_tokens, word_pieces

    try:
        specials = special_tokens(tokenizer)
    except ValueError as err:
        raise UnitransError(f"tokenizer {type(tokenizer).__name__}: {err}") from None
    start = len(specials.prefix)
    end = max_length - len(specials.suffix)  # content subwords occupy columns start..end-1
    encoded = []
    for pieces in word_pieces(tokenizer, sentences, NO_PIECES):
        ids = list(specials.prefix)
        columns: list[list[int]] = []
        for word in pieces:
            first = len(ids)
            if word != [NO_PIECES]:
                ids.extend(word)
            columns.append(list(range(first, min(len(ids), end))))
        encoded.append((ids[: max(end, start)] + list(specials.suffix), columns))
    return encoded


def _load_model(folder: Path):
    from transformers import AutoModel

    from unitrans.model.encoders import check_model_folder
    from unitrans.model.runtime import quiet_transformers

    check_model_folder(folder)
    with quiet_transformers():  # a checkpoint's classifier head is reported UNEXPECTED here
        return AutoModel.from_pretrained(folder, trust_remote_code=False).eval()


def _forward_batches(
    model, tokenizer, encoded: Sequence[tuple[list[int], list[list[int]]]], config: TypeVectorConfig, top: int
) -> Iterator[tuple[list[int], tuple[torch.Tensor, ...]]]:
    """(indices into `encoded`, hidden states) per batch of at most `batch_tokens` padded subwords,
    shortest sequences first; raises if the model returns no hidden state `top`."""
    from unitrans.model.runtime import autocast, use_bf16

    device = torch.device("cpu")
    bf16 = use_bf16(device, config.bf16)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    batches: list[list[int]] = [[]]
    for i in order:
        longest = len(encoded[i][0])
        if batches[-1] and longest * (len(batches[-1]) + 1) > config.batch_tokens:
            batches.append([])
        batches[-1].append(i)
    with torch.no_grad():
        for batch in batches:
            if not batch:
                continue
            width = max(len(encoded[i][0]) for i in batch)
            ids = torch.full((len(batch), width), tokenizer.pad_token_id or 0)
            mask = torch.zeros(len(batch), width, dtype=torch.long)
            for row, i in enumerate(batch):
                seq = encoded[i][0]
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
            with autocast(device, bf16):
                out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            hidden = out.hidden_states
            if hidden is None or len(hidden) <= top:
                raise UnitransError(f"{config.encoder}: the encoder does not return hidden states 0..{top}")
            yield batch, hidden


def _extract(
    folder: Path,
    tokenizer,
    sentences: Sequence[Sentence],
    config: TypeVectorConfig,
    layers: Sequence[int],
    progress: bool,
) -> dict[int, WordEmbeddings]:
    vocab, counts = frequency_vocab(sentences, config.lowercase, config.max_vocab)
    index = {w: i for i, w in enumerate(vocab)}
    plan = _wanted_positions(sentences, index, config)
    model = _load_model(folder)
    encoded = encode_words(tokenizer, [sentences[si] for si, _ in plan], config.max_length)
    dim = int(model.config.hidden_size)
    sums = torch.zeros(len(layers), len(vocab), dim)
    seen = torch.zeros(len(vocab))
    bar = tqdm(total=sum(len(w) for _, w in plan), desc="type vectors", unit="word", disable=not progress)
    for batch, hidden in _forward_batches(model, tokenizer, encoded, config, max(layers)):
        tok_rows, tok_cols, tok_type, tok_weight = [], [], [], []
        for row, i in enumerate(batch):
            columns = encoded[i][1]
            for wi, tid in plan[i][1]:
                cols = columns[wi]
                if not cols:  # cut by max_length or no subwords: not collected
                    continue
                seen[tid] += 1
                for col in cols:
                    tok_rows.append(row)
                    tok_cols.append(col)
                    tok_type.append(tid)
                    tok_weight.append(1.0 / len(cols))
        rows, cols = torch.tensor(tok_rows, dtype=torch.long), torch.tensor(tok_cols, dtype=torch.long)
        types = torch.tensor(tok_type, dtype=torch.long)
        weight = torch.tensor(tok_weight).unsqueeze(1)
        for li, layer in enumerate(layers):
            vecs = hidden[layer][rows, cols].float() * weight
            sums[li].index_add_(0, types, vecs)
        bar.update(sum(len(plan[i][1]) for i in batch))
    bar.close()
    keep = torch.nonzero(seen > 0).flatten()
    if len(keep) < len(vocab):
        logger.info(
            "%d of %d types had no encodable occurrence and are left out", len(vocab) - len(keep), len(vocab)
        )
    words = tuple(vocab[i] for i in keep.tolist())
    freq = np.array([counts[w] for w in words], dtype=np.int64)
    means = sums[:, keep] / seen[keep].unsqueeze(1)
    return {layer: WordEmbeddings(words, means[li].numpy(), freq) for li, layer in enumerate(layers)}


def token_vectors(
    sentences: Sequence[Sentence], config: TypeVectorConfig, layer: int, *, progress: bool = True
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every word's own contextual vector at `layer` (the mean of its subwords, as for type vectors), per
    batch: (sentence indices, word indices, vectors). Words cut by `max_length` or without subwords have
    none. Not cached: only the contextual choice (`translate.contextual`) needs them, once per run."""
    from unitrans.model.encoders import resolve_encoder

    folder = resolve_encoder(config.encoder)
    tokenizer = _load_tokenizer(folder)
    model = _load_model(folder)
    encoded = encode_words(tokenizer, sentences, config.max_length)
    bar = tqdm(total=sum(len(s) for s in sentences), desc="token vectors", unit="word", disable=not progress)
    for batch, hidden in _forward_batches(model, tokenizer, encoded, config, layer):
        states = hidden[layer].float()
        sent_ids, word_ids, vectors = [], [], []
        for row, i in enumerate(batch):
            for wi, cols in enumerate(encoded[i][1]):
                if cols:
                    sent_ids.append(i)
                    word_ids.append(wi)
                    vectors.append(states[row, cols].mean(dim=0))
        bar.update(sum(len(sentences[i]) for i in batch))
        if vectors:
            yield np.array(sent_ids), np.array(word_ids), torch.stack(vectors).numpy()
    bar.close()
