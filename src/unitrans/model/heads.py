"""Our own token-classification head, for encoders transformers has none for (Gemma-3 / EmbeddingGemma).

`AutoModelForTokenClassification` rejects a `gemma3_text` config, so such a tagger is an `AutoModel`
encoder plus dropout and a linear layer, with the attribute names of transformers' token classifiers
(`classifier`, `dropout`, `base_model`, `config`) so the rest of unitrans treats both alike.

On disk it is the encoder's own `save_pretrained` folder (config.json with the labels in id2label, no
auto_map, so `AutoModel.from_pretrained(folder)` still gives the encoder) plus the head in
`token_classifier.safetensors` (weight, bias; the dropout in the file's metadata). Nothing in it runs code.
`EncoderTagger.from_pretrained(folder)` (or `unitrans.model.tagger.load_tagger(folder)`) reloads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel
from transformers.modeling_outputs import TokenClassifierOutput

from unitrans.errors import UnitransError

HEAD_FILE = "token_classifier.safetensors"


class EncoderTagger(nn.Module):
    """An encoder, dropout and a linear layer over the labels; `forward` gives per-subword logits."""

    def __init__(self, encoder: nn.Module, dropout: float) -> None:
        super().__init__()
        self.model = encoder
        self.dropout = nn.Dropout(dropout)
        config = encoder.config
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        # transformers' token classifiers start from N(0, initializer_range) weights and zero biases
        nn.init.normal_(self.classifier.weight, std=float(getattr(config, "initializer_range", 0.02)))
        nn.init.zeros_(self.classifier.bias)

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def base_model(self) -> nn.Module:
        return self.model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> TokenClassifierOutput:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return TokenClassifierOutput(logits=self.classifier(self.dropout(hidden)))

    def save_pretrained(self, folder: str | Path) -> None:
        """The encoder's `save_pretrained` files plus the head (token_classifier.safetensors)."""
        folder = Path(folder)
        self.model.save_pretrained(folder)
        head = {k: v.detach().contiguous().cpu() for k, v in self.classifier.state_dict().items()}
        save_file(head, str(folder / HEAD_FILE), metadata={"dropout": repr(float(self.dropout.p))})

    @classmethod
    def from_encoder(
        cls, folder: Path, labels: Sequence[str], dropout: float, attn_implementation: str | None
    ) -> EncoderTagger:
        """A new, randomly initialised head over `labels` on the encoder in `folder`."""
        encoder = _encoder(folder, attn_implementation)
        encoder.config.id2label = dict(enumerate(labels))
        encoder.config.label2id = {label: i for i, label in enumerate(labels)}
        return cls(encoder, dropout)

    @classmethod
    def from_pretrained(cls, folder: Path, attn_implementation: str | None = "sdpa") -> EncoderTagger:
        """Reload a saved tagger: the encoder, then the head (shapes checked against the config)."""
        folder = Path(folder)
        path = folder / HEAD_FILE
        if not path.is_file():
            raise UnitransError(f"{folder}: no {HEAD_FILE} (the tagger's head)")
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            dropout = float((f.metadata() or {}).get("dropout", "0.1"))
        head = load_file(str(path))
        encoder = _encoder(folder, attn_implementation)
        tagger = cls(encoder, dropout)
        want = {k: tuple(v.shape) for k, v in tagger.classifier.state_dict().items()}
        have = {k: tuple(v.shape) for k, v in head.items()}
        if want != have:
            raise UnitransError(f"{path}: head shapes {have} do not fit the config (expected {want})")
        tagger.classifier.load_state_dict(head)
        return tagger


def _encoder(folder: Path, attn_implementation: str | None) -> nn.Module:
    from unitrans.model.runtime import quiet_transformers

    with quiet_transformers():  # a sentence-transformers folder's extra modules are reported UNUSED
        return AutoModel.from_pretrained(
            folder, attn_implementation=attn_implementation, trust_remote_code=False
        )
