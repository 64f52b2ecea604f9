"""Shared fixtures: a tiny in-process encoder (2-layer BERT, hidden 32, word-level tokenizer).

Any code path that takes an encoder name also takes a local folder, so tests pass this folder's path
wherever users would pass `me5-small` or a hub name.
"""

from __future__ import annotations

from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "conll"

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
