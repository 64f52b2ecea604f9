"""The Hugging Face token-classification recipe's data side, shared by the benchmarks that compare with it.

As in the HF example: sentences tokenized split into words with 128-subword truncation, the first subword
of each word labelled, the rest -100. Predictions come back as per-word probabilities in word order;
words lost to truncation get "O", as the recipe would tag them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np


def encode(tokenizer, sentences: Sequence, label_id: dict[str, int]) -> list[dict[str, list[int]]]:
    """One dict per sentence (a list of dicts is a valid torch Dataset for `Trainer`)."""
    enc = tokenizer(
        [list(s.words) for s in sentences], is_split_into_words=True, truncation=True, max_length=128
    )
    rows = []
    for k, s in enumerate(sentences):
        previous, ids = None, []
        for w in enc.word_ids(k):
            ids.append(-100 if w is None or w == previous else label_id[s.tags[w]])
            previous = w
        rows.append(
            {"input_ids": enc["input_ids"][k], "attention_mask": enc["attention_mask"][k], "labels": ids}
        )
    return rows


def word_probs(predictions, label_ids, sentences: Sequence, labels: Sequence[str]) -> list[np.ndarray]:
    """`Trainer.predict` logits → softmax of each word's first subword, in word order."""
    logits, gold_ids = np.asarray(predictions, dtype=np.float32), np.asarray(label_ids)
    outside = list(labels).index("O")
    probs = []
    for k, s in enumerate(sentences):
        first = logits[k][gold_ids[k] != -100]
        p = np.zeros((len(s), len(labels)), dtype=np.float32)
        p[:, outside] = 1.0
        e = np.exp(first - first.max(axis=1, keepdims=True))
        p[: len(first)] = e / e.sum(axis=1, keepdims=True)
        probs.append(p)
    return probs


def load_frozen(encoder: str, seed: int, freeze: int = 3):
    """(model, tokenizer, labels, label_id): the token-classification model with its head seeded and the
    embeddings + bottom `freeze` layers frozen, as unitrans freezes them. Where transformers has no
    token-classification class for the architecture (Gemma-3 embedding models), the recipe's model is
    unitrans's own encoder + dropout + linear head, given the loss `Trainer` expects (`with_loss`)."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from unitrans.data import CONLL_LABELS
    from unitrans.model.architectures import family_for
    from unitrans.model.encoders import resolve_encoder
    from unitrans.model.heads import EncoderTagger
    from unitrans.model.tagger import freeze_bottom

    folder = resolve_encoder(encoder)
    labels = list(CONLL_LABELS)
    label_id = {lab: i for i, lab in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(seed)
    family = family_for(json.loads((folder / "config.json").read_text()), str(folder))
    if family.head == "unitrans":
        model = with_loss(EncoderTagger.from_encoder(folder, labels, 0.1, family.attn_implementation))
    else:
        model = AutoModelForTokenClassification.from_pretrained(
            folder, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label_id
        )
    freeze_bottom(model, freeze)
    return model, tokenizer, labels, label_id


def _with_loss_class():
    import torch
    from transformers.modeling_outputs import TokenClassifierOutput

    class WithLoss(torch.nn.Module):
        """A tagger whose forward also returns the token-classification loss, as HF's classes do."""

        def __init__(self, tagger: torch.nn.Module) -> None:
            super().__init__()
            self.tagger = tagger

        @property
        def base_model(self) -> torch.nn.Module:
            return self.tagger.base_model

        def forward(self, input_ids, attention_mask=None, labels=None, **_):
            logits = self.tagger(input_ids=input_ids, attention_mask=attention_mask).logits
            loss = None
            if labels is not None:
                loss = torch.nn.functional.cross_entropy(
                    logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100
                )
            return TokenClassifierOutput(loss=loss, logits=logits)

    return WithLoss


def with_loss(tagger):
    """`tagger` wrapped to return the loss too (the class is made on first use: no torch at import)."""
    return _with_loss_class()(tagger)
