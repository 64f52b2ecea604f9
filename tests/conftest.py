"""Shared fixtures: a tiny in-process encoder (2-layer BERT, hidden 32, word-level tokenizer).

Any code path that takes an encoder name also takes a local folder, so tests pass this folder's path
wherever users would pass `me5-small` or a hub name.
"""

from __future__ import annotations

from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "conll"


@pytest.fixture(scope="session", autouse=True)
def weight_hashes_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory):
    """Compact checkpoints memoize encoder hashes under the user's cache; tests keep theirs in a temporary
    folder (an environment variable, so spawned pipeline workers see it too)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNITRANS_WEIGHT_HASHES", str(tmp_path_factory.mktemp("weight-hashes")))
        yield


TINY_FAMILIES = {
    "bert": "tiny_encoder_dir",
    "xlmr": "tiny_xlmr_dir",
    "deberta": "tiny_deberta_dir",
    "gemma": "tiny_gemma_dir",
}
"""A tiny model of each encoder family the tagger supports: family -> the fixture that builds it."""


def tiny_train_sentences():
    """Four labelled sentences in the tiny vocabulary (tests repeat them to get enough steps)."""
    from unitrans.data import Sentence

    return [
        Sentence(("John", "Smith", "visited", "Madrid", "."), ("B-PER", "I-PER", "O", "B-LOC", "O")),
        Sentence(("Google", "said", "."), ("B-ORG", "O", "O")),
        Sentence(("Mary", "lives", "in", "London", "."), ("B-PER", "O", "O", "B-LOC", "O")),
        Sentence(
            ("the", "man", "works", "for", "Reuters", "in", "Paris"),
            ("O", "O", "O", "O", "B-ORG", "O", "B-LOC"),
        ),
    ]


TINY_VOCAB = (
    "[PAD] [UNK] [CLS] [SEP] [MASK] . , the a of in to and is was at on "
    "el la de en y un una los las del es fue "
    "john smith mary madrid london paris spain england france google reuters eu germany "
    "juan maria barcelona españa inglaterra francia alemania "
    "said met visited works lives for with from by "
    "dijo visitó trabaja vive con por para "
    "company city man woman people team "
    "empresa ciudad hombre mujer gente equipo"
).split()


def build_tiny_encoder(folder: Path, *, layers: int = 2, hidden: int = 32, seed: int = 0) -> Path:
    """Write a randomly initialised tiny BERT and a lower-casing word-level fast tokenizer to `folder`."""
    import torch
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(dict.fromkeys(TINY_VOCAB))}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny BERT encoder usable as `encoder=str(path)` everywhere."""
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture(scope="session")
def conll_data_dir() -> Path:
    """The real benchmark data; tests that need it skip, saying why, when it is absent."""
    if not (DATA_DIR / "en" / "train.txt").is_file():
        pytest.skip(f"benchmark data not found at {DATA_DIR} (needs ../shared/data/conll beside the repo)")
    return DATA_DIR


# --- tiny encoders of the other families (issue 14): XLM-R, DeBERTa-v2, Gemma-3 bidirectional --------------
# Each is a randomly initialised model built from a config plus its family's real transformers tokenizer class
# over a tiny in-memory vocabulary (no hub): SentencePiece-Unigram with Metaspace for XLM-R and DeBERTa-v2,
# SentencePiece-BPE with byte fallback and no word-start marker for Gemma.

FAMILY_WORDS = [w for w in dict.fromkeys(TINY_VOCAB) if not w.startswith("[")]
FAMILY_CHARS = sorted(
    set("".join(FAMILY_WORDS)) | set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,-'")
)


def _jitter(model, scale: float = 0.05):
    """Add noise to every weight, as training would: zero biases and zero padding rows at init would
    otherwise hide mistakes (e.g. a pad embedding that should have been masked is exactly zero)."""
    import torch

    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    return model


def _unigram_vocab(specials: list[str]) -> list[tuple[str, float]]:
    """Specials (score 0), whole words with a word-start marker in both casings, then single characters."""
    vocab = [(s, 0.0) for s in specials]
    seen = set(specials)
    pieces = [("▁" + w, -5.0) for w in FAMILY_WORDS] + [("▁" + w.capitalize(), -5.5) for w in FAMILY_WORDS]
    pieces += [("▁", -8.0)] + [("▁" + c, -9.0) for c in FAMILY_CHARS] + [(c, -10.0) for c in FAMILY_CHARS]
    for piece, score in pieces:
        if piece not in seen:
            seen.add(piece)
            vocab.append((piece, score))
    return vocab


def build_tiny_xlmr(folder: Path, *, layers: int = 2, hidden: int = 32, seed: int = 0) -> Path:
    """A tiny XLM-R (absolute positions offset by the padding index) with an XLM-R Unigram tokenizer."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizer

    tokenizer = XLMRobertaTokenizer(vocab=_unigram_vocab(["<s>", "<pad>", "</s>", "<unk>", "<mask>"]))
    tokenizer.model_max_length = 512
    torch.manual_seed(seed)
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    _jitter(XLMRobertaModel(config, add_pooling_layer=False)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_deberta(folder: Path, *, layers: int = 2, hidden: int = 32, seed: int = 0) -> Path:
    """A tiny DeBERTa-v2 with relative attention (bucketed positions, p2c+c2p, shared keys), no absolute
    positions, and the convolution after the first layer (as deberta-v2-xlarge has)."""
    import torch
    from transformers import DebertaV2Config, DebertaV2Model, DebertaV2Tokenizer

    tokenizer = DebertaV2Tokenizer(vocab=_unigram_vocab(["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]))
    tokenizer.model_max_length = 512
    torch.manual_seed(seed)
    config = DebertaV2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=512,
        type_vocab_size=0,
        relative_attention=True,
        position_buckets=8,
        max_relative_positions=-1,
        pos_att_type=["p2c", "c2p"],
        position_biased_input=False,
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        conv_kernel_size=3,
        pad_token_id=0,
    )
    _jitter(DebertaV2Model(config)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_gemma_tokenizer(*, cross_word_merge: bool = True):
    """A Gemma BPE tokenizer (byte fallback, spaces → `▁`, no marker per word) over the tiny vocabulary.

    Words merge into `▁word` pieces; `▁of▁the` spans two words (real Gemma vocabularies have a few
    multi-word pieces), which the aligner must survive.
    """
    from transformers import GemmaTokenizer

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for c in ["▁", *FAMILY_CHARS]:
        vocab.setdefault(c, len(vocab))
    merges: list[tuple[str, str]] = []

    def merge(a: str, b: str) -> None:
        if a + b not in vocab:
            merges.append((a, b))
            vocab[a + b] = len(vocab)

    words = FAMILY_WORDS + [w.capitalize() for w in FAMILY_WORDS]
    for word in words:
        for i in range(1, len(word)):
            merge(word[:i], word[i])
    for word in words:
        merge("▁", word)
    if cross_word_merge:
        merge("▁of", "▁the")
    tokenizer = GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=True, add_eos_token=True)
    tokenizer.model_max_length = 512
    return tokenizer


def build_tiny_gemma(folder: Path, *, layers: int = 3, hidden: int = 32, seed: int = 0) -> Path:
    """A tiny Gemma-3 text encoder with bidirectional attention, like EmbeddingGemma: sliding-window and
    full-attention layers (a window of 2 positions each side, so windows of 8+ subwords exercise it)."""
    import torch
    from transformers import Gemma3TextConfig, Gemma3TextModel

    tokenizer = tiny_gemma_tokenizer()
    torch.manual_seed(seed)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        query_pre_attn_scalar=16,
        max_position_embeddings=512,
        sliding_window=4,
        layer_types=["sliding_attention"] * (layers - 1) + ["full_attention"],
        use_bidirectional_attention=True,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    _jitter(Gemma3TextModel(config)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_xlmr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_xlmr(tmp_path_factory.mktemp("tiny-xlmr"))


@pytest.fixture(scope="session")
def tiny_deberta_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_deberta(tmp_path_factory.mktemp("tiny-deberta"))


@pytest.fixture(scope="session")
def tiny_gemma_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gemma(tmp_path_factory.mktemp("tiny-gemma"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a test module: tiny models run several times faster on one thread than on a
    contended multi-core CPU, and each pipeline worker then gets max(1, 1 // workers) = 1 thread, so runs
    in the main process, in local workers and on Ray give the same numbers."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
