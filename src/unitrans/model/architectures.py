"""Per encoder family: where the embeddings and the layer list are, and how one layer is called.

The tagger's split forward (embeddings + bottom k layers frozen and cached; top layers trained) has to run
"embeddings", "layers i..j" and "what follows the last layer" separately. No Hugging Face model exposes
that: each family builds its attention masks, position information and extras inside its own `forward`.
A `Family` names those parts for one family and repeats, step for step, what the model's `forward` does
between them; the tests check the split forward against the model's own forward for every family.

- BERT, RoBERTa, XLM-R, CamemBERT (and the E5 encoders, which are BERTs): `embeddings`, `encoder.layer`,
  a bidirectional mask built by transformers.
- DeBERTa-v2/v3: relative attention (relative positions and the shared relative embeddings, which are
  frozen with the embeddings because every layer reads them), the embedding output multiplied by the mask,
  and the optional convolution after the first layer.
- Gemma-3 text models (EmbeddingGemma: `use_bidirectional_attention`): `embed_tokens`, `layers`, a full or
  sliding-window mask per layer type, rotary position embeddings per layer type, and a final RMSNorm
  after the last layer. transformers has no token-classification class for them, so the head is ours
  (`unitrans.model.heads`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from unitrans.errors import UnitransError


class Family:
    """How the tagger drives one encoder family; subclasses override what differs from BERT."""

    name = ""
    model_types: tuple[str, ...] = ()
    head = "transformers"  # "transformers": an AutoModelForTokenClassification; "unitrans": our own head
    attn_implementation: str | None = "sdpa"
    classifier_dropout = True  # the token-classification config has a `classifier_dropout` field

    def check(self, config: Mapping[str, Any], where: str) -> None:
        """Refuse a configuration the split forward does not reproduce (one line)."""

    def embeddings(self, base: nn.Module) -> list[nn.Module]:
        """Modules frozen together with the embeddings (whatever every layer reads)."""
        return [base.embeddings]

    def layers(self, base: nn.Module) -> nn.ModuleList:
        return base.encoder.layer

    def bottom(self, base: nn.Module, k: int) -> list[nn.Module]:
        """Every module the embeddings and layers [0, k) compute with: frozen together in training,
        hashed together when their output is shared (`unitrans.model.shared_states`)."""
        return [*self.embeddings(base), *list(self.layers(base))[:k]]

    def embed(
        self, base: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        return base.embeddings(input_ids=input_ids)

    def context(self, base: nn.Module, hidden: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        """What every layer needs besides the hidden states (masks, positions), built once per batch."""
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(
            config=base.config, inputs_embeds=hidden, attention_mask=attention_mask
        )

    def layer(self, base: nn.Module, i: int, hidden: torch.Tensor, context: Any) -> torch.Tensor:
        return self.layers(base)[i](hidden, context)

    def final(self, base: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """What the model applies after its last layer, per token (BERTs: nothing)."""
        return hidden


class BertFamily(Family):
    name = "bert"
    model_types = ("bert", "roberta", "xlm-roberta", "camembert")


class DebertaV2Family(Family):
    name = "deberta-v2"
    model_types = ("deberta-v2",)
    attn_implementation = None  # DeBERTa's disentangled attention has no SDPA kernel
    classifier_dropout = False  # its head uses hidden_dropout_prob

    def check(self, config: Mapping[str, Any], where: str) -> None:
        if int(config.get("z_steps", 0) or 0) > 1:
            raise UnitransError(f"{where}: DeBERTa with z_steps > 1 is not supported by the tagger")

    def embeddings(self, base: nn.Module) -> list[nn.Module]:
        encoder = base.encoder
        shared = [getattr(encoder, "rel_embeddings", None), getattr(encoder, "LayerNorm", None)]
        return [base.embeddings, *(m for m in shared if m is not None)]

    def bottom(self, base: nn.Module, k: int) -> list[nn.Module]:
        conv = getattr(base.encoder, "conv", None)  # applied after layer 0 (see `layer`): part of it
        return super().bottom(base, k) + ([conv] if k > 0 and conv is not None else [])

    def embed(
        self, base: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        return base.embeddings(input_ids=input_ids, mask=attention_mask)

    def context(self, base: nn.Module, hidden: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        encoder = base.encoder
        return {
            "input_mask": attention_mask,
            "attention_mask": encoder.get_attention_mask(attention_mask),
            "relative_pos": encoder.get_rel_pos(hidden),
            "rel_embeddings": encoder.get_rel_embedding(),
        }

    def layer(self, base: nn.Module, i: int, hidden: torch.Tensor, context: Any) -> torch.Tensor:
        encoder = base.encoder
        if i == 0:
            # DebertaV2Model multiplies the embedding output by the mask; `embed` without a mask did not.
            # Masking twice is exact (x * 1 = x), and the convolution below must see zeros at pads.
            hidden = hidden * context["input_mask"].unsqueeze(-1).to(hidden.dtype)
        out, _ = encoder.layer[i](
            hidden,
            context["attention_mask"],
            query_states=None,
            relative_pos=context["relative_pos"],
            rel_embeddings=context["rel_embeddings"],
            output_attentions=False,
        )
        if i == 0 and encoder.conv is not None:
            out = encoder.conv(hidden, out, context["input_mask"])
        return out


class Gemma3Family(Family):
    name = "gemma3"
    model_types = ("gemma3_text",)
    head = "unitrans"

    def embeddings(self, base: nn.Module) -> list[nn.Module]:
        return [base.embed_tokens]

    def layers(self, base: nn.Module) -> nn.ModuleList:
        return base.layers[: base.config.num_hidden_layers]

    def embed(
        self, base: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        return base.embed_tokens(input_ids)

    def context(self, base: nn.Module, hidden: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        """Gemma3TextModel.forward's masks and rotary embeddings, for right-padded windows from position 0."""
        from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

        config = base.config
        position_ids = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
        full = {
            "config": config,
            "inputs_embeds": hidden,
            "attention_mask": attention_mask,
            "cache": None,
            "position_ids": position_ids,
        }
        sliding = dict(full)
        if getattr(config, "use_bidirectional_attention", False):
            window = int(config.sliding_window)
            full["or_mask_function"] = lambda *args: torch.tensor(True, dtype=torch.bool)
            sliding["or_mask_function"] = lambda b, h, q, kv: abs(q - kv) < window
        masks = {
            "full_attention": create_causal_mask(**full),
            "sliding_attention": create_sliding_window_causal_mask(**sliding),
        }
        rotary = {t: base.rotary_emb(hidden, position_ids, t) for t in set(config.layer_types)}
        return {"masks": masks, "rotary": rotary, "position_ids": position_ids}

    def layer(self, base: nn.Module, i: int, hidden: torch.Tensor, context: Any) -> torch.Tensor:
        kind = base.config.layer_types[i]
        return base.layers[i](
            hidden,
            attention_mask=context["masks"][kind],
            position_embeddings=context["rotary"][kind],
            position_ids=context["position_ids"],
        )

    def final(self, base: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        return base.norm(hidden)


FAMILIES: tuple[Family, ...] = (BertFamily(), DebertaV2Family(), Gemma3Family())
_BY_MODEL_TYPE = {t: f for f in FAMILIES for t in f.model_types}
SUPPORTED = ", ".join(sorted(_BY_MODEL_TYPE))


def family_for(config: Mapping[str, Any], where: str) -> Family:
    """The family of a config.json (a dict); an architecture the tagger cannot split is one line."""
    model_type = str(config.get("model_type", ""))
    family = _BY_MODEL_TYPE.get(model_type)
    if family is None:
        raise UnitransError(
            f"{where}: encoder architecture {model_type or 'unknown'!r} is not supported by the tagger "
            f"(supported model types: {SUPPORTED})"
        )
    family.check(config, where)
    return family


def family_of(base: nn.Module) -> Family:
    """The family of a loaded base model (its config's model_type); cheap, called every step."""
    family = _BY_MODEL_TYPE.get(getattr(base.config, "model_type", ""))
    return family if family is not None else family_for(base.config.to_dict(), type(base).__name__)
