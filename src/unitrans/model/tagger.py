"""The tagger: a multilingual encoder, dropout and a linear layer over the labels, softmax per word.

Where transformers has a token-classification class for the encoder (BERT, XLM-R, DeBERTa-v2, ...), the
model *is* that `AutoModelForTokenClassification`, so a checkpoint folder also loads with
`transformers.pipeline("token-classification", model=folder)`. For encoders it has none for (Gemma-3 /
EmbeddingGemma) the head is ours (`unitrans.model.heads`, saved beside the encoder). Either way
`load_tagger(folder)` is the one call that reloads a checkpoint, and
`model(input_ids=..., attention_mask=...).logits` gives per-subword logits. A checkpoint may also be
compact (only what training changed, against a hash-verified base encoder: `unitrans.model.compact`);
`load_tagger` rebuilds it bit for bit.

What this module adds is the split forward that makes training fast: the embeddings and the bottom k
layers are frozen, so their output for a window is the same at every step and is computed once
(`frozen_states`, no dropout, no grad); training then runs only the top layers (`word_logits`) and the
classifier on first subwords only. Where each family keeps its embeddings and layers, and how a layer is
called, is in `unitrans.model.architectures`; an architecture not listed there is refused in one line.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForTokenClassification, AutoTokenizer

from unitrans.atomic import apply_umask_modes, write_text_atomic
from unitrans.errors import UnitransError
from unitrans.model.architectures import Family, family_for, family_of
from unitrans.model.compact import (
    COMPACT_KEY,
    DELTA_FILE,
    base_folder,
    compact_info,
    load_compact,
    save_compact,
)
from unitrans.model.encoders import check_model_folder
from unitrans.model.heads import HEAD_FILE, EncoderTagger
from unitrans.model.runtime import quiet_transformers

logger = logging.getLogger(__name__)

METADATA_FILE = "unitrans.json"


def is_checkpoint(folder: Path) -> bool:
    """A unitrans checkpoint (as opposed to a bare encoder) carries unitrans.json."""
    return (Path(folder) / METADATA_FILE).is_file()


def read_metadata(folder: Path) -> dict[str, Any]:
    path = Path(folder) / METADATA_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise UnitransError(f"{path}: not a readable unitrans checkpoint ({err})") from err


NOT_A_TAGGER = "not a unitrans tagger checkpoint (no unitrans.json); train one with `unitrans train`"


def check_tagger_folder(folder: Path) -> dict[str, Any]:
    """A checkpoint written by `unitrans train`, checked before any weights load; returns its config.

    Why: a bare encoder would otherwise get a random head (or a `ValueError` traceback), and custom code
    or a broken config would surface deep inside transformers.
    """
    folder = Path(folder)
    if not folder.is_dir():
        state = "a file" if folder.exists() else "no such folder"
        raise UnitransError(f"{folder}: expected a checkpoint folder from `unitrans train` ({state})")
    config = check_model_folder(folder) if (folder / "config.json").exists() else None
    if not is_checkpoint(folder):
        raise UnitransError(f"{folder}: {NOT_A_TAGGER}")
    if config is None:
        raise UnitransError(f"{folder}: incomplete checkpoint (unitrans.json but no config.json)")
    compact = compact_info(read_metadata(folder)) is not None
    if not (_has_transformers_head(config) or (folder / HEAD_FILE).is_file() or compact):
        raise UnitransError(
            f"{folder}: has unitrans.json but no token-classification head "
            f"(neither in config.json nor in {HEAD_FILE})"
        )
    family_for(config, str(folder))  # an architecture the tagger cannot run is one line, here
    return config


def _has_transformers_head(config: dict[str, Any]) -> bool:
    architectures = config.get("architectures") or []
    return isinstance(architectures, list) and any(
        str(a).endswith("ForTokenClassification") for a in architectures
    )


def _loading(source: Path, what: str, load: Callable[[], Any]) -> Any:
    """Run a transformers loader; a broken file (truncated weights, bad tokenizer) becomes one line."""
    try:
        return load()
    except UnitransError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError, EOFError) as err:
        raise UnitransError(f"{source}: cannot load the {what} ({_first_line(err)})") from None
    except Exception as err:  # safetensors raises SafetensorError, the tokenizers Rust core a bare Exception
        if type(err) is not Exception and type(err).__module__.split(".")[0] != "safetensors":
            raise
        raise UnitransError(f"{source}: cannot load the {what} ({_first_line(err)})") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def load_tagger(
    source: Path, labels: Sequence[str] | None = None, *, dropout: float = 0.1
) -> tuple[nn.Module, Any]:
    """Load a checkpoint (keeping its head) or an encoder folder (with a new head over `labels`).

    The one documented call that reloads any saved tagger: `model, tokenizer = load_tagger(folder)`.
    Never runs code from the folder: `trust_remote_code=False`, and a config with `auto_map` is refused.
    """
    source = Path(source)
    if labels is None:
        config = check_tagger_folder(source)
    elif not (source / "config.json").is_file():
        raise UnitransError(f"{source}: expected a model folder with config.json")
    else:
        config = check_model_folder(source)
    family = family_for(config, str(source))  # before any weights load
    # A compact checkpoint's tokenizer is its base encoder's, whose weights hash is checked first.
    metadata = read_metadata(source) if is_checkpoint(source) else {}
    compact = compact_info(metadata) is not None
    words_from = base_folder(source, metadata) if compact else source
    # The tokenizer first: it is cheap, and a broken one then fails before the weights load.
    tokenizer = _loading(
        words_from, "tokenizer", lambda: AutoTokenizer.from_pretrained(words_from, trust_remote_code=False)
    )
    if not getattr(tokenizer, "is_fast", False):
        raise UnitransError(f"{source}: a fast tokenizer is needed to align subwords with words")
    if compact:
        model = _loading(source, "model", lambda: load_compact(source, metadata, family))
    elif is_checkpoint(source):
        model = _loading(source, "model", lambda: _load_checkpoint(source, config, family))
        have = [model.config.id2label[i] for i in range(model.config.num_labels)]
        if labels is not None and list(labels) != have:
            raise UnitransError(
                f"{source}: checkpoint labels {have} differ from the requested {list(labels)}"
            )
    else:
        assert labels is not None  # check_tagger_folder refused a bare encoder without labels
        model = _loading(source, "encoder", lambda: _new_head(source, family, labels, dropout))
    if metadata:
        # Training from a checkpoint (Θteach from Θsrc) uses the requested head dropout; a reload for
        # prediction gets the one it was trained with. Families whose config has no head-dropout field
        # (DeBERTa-v2 reads hidden_dropout_prob) would otherwise come back at their default.
        trained = _trained_dropout(metadata, dropout)
        _set_head_dropout(model, family, dropout if labels is not None else trained)
    layers = family.layers(model.base_model)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise UnitransError(f"{source}: the {family.name} encoder has no layers")
    return model, tokenizer


def _trained_dropout(metadata: dict[str, Any], default: float) -> float:
    value = (metadata.get("config") or {}).get("dropout", default)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _set_head_dropout(model: nn.Module, family: Family, p: float) -> None:
    model.dropout.p = p
    if family.classifier_dropout:
        model.config.classifier_dropout = p


def _load_checkpoint(source: Path, config: dict[str, Any], family: Family) -> nn.Module:
    with quiet_transformers():
        if not _has_transformers_head(config):
            return EncoderTagger.from_pretrained(source, family.attn_implementation)
        return AutoModelForTokenClassification.from_pretrained(
            source, attn_implementation=family.attn_implementation, trust_remote_code=False
        )


def _new_head(source: Path, family: Family, labels: Sequence[str], dropout: float) -> nn.Module:
    if family.head == "unitrans":
        return EncoderTagger.from_encoder(source, labels, dropout, family.attn_implementation)
    options: dict[str, Any] = {"classifier_dropout": dropout} if family.classifier_dropout else {}
    with quiet_transformers():  # the new head is reported MISSING, the unused pooler UNEXPECTED
        model = AutoModelForTokenClassification.from_pretrained(
            source,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={lab: i for i, lab in enumerate(labels)},
            **options,
            attn_implementation=family.attn_implementation,
            trust_remote_code=False,
        )
    if not family.classifier_dropout:  # its config has no such field (a reloaded checkpoint: the default)
        model.dropout.p = dropout
    return model


def num_layers(model: nn.Module) -> int:
    base = model.base_model
    return len(family_of(base).layers(base))


def freeze_bottom(model: nn.Module, k: int) -> None:
    """Freeze the embeddings (with what every layer reads) and the bottom k layers (the paper's k = 3)."""
    base = model.base_model
    family = family_of(base)
    layers = family.layers(base)
    if not 0 <= k <= len(layers):
        raise UnitransError(f"freeze_layers must be between 0 and {len(layers)}, got {k}")
    for module in family.bottom(base, k):
        for p in module.parameters():
            p.requires_grad_(False)


@torch.no_grad()
def frozen_states(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    k: int,
    *,
    dropout: bool = False,
) -> torch.Tensor:
    """Output of the embeddings + bottom k layers; without dropout (cacheable) unless `dropout`."""
    base = model.base_model
    family = family_of(base)
    was_training = model.training
    model.train(dropout)
    try:
        hidden = family.embed(base, input_ids, attention_mask)
        context = family.context(base, hidden, attention_mask)
        for i in range(k):
            hidden = family.layer(base, i, hidden, context)
    finally:
        model.train(was_training)
    return hidden


def word_logits(
    model: nn.Module,
    hidden: torch.Tensor,
    attention_mask: torch.Tensor,
    first_layer: int,
    flat_positions: torch.Tensor,
) -> torch.Tensor:
    """Run layers[first_layer:] on `hidden` (B, T, H), then the head on the given first subwords.

    `flat_positions` index the flattened (B*T) sequence; the result is (N, labels).
    """
    base = model.base_model
    family = family_of(base)
    hidden = encoder_layers(model, hidden, attention_mask, first_layer)
    words = hidden.reshape(-1, hidden.shape[-1]).index_select(0, flat_positions)
    return model.classifier(model.dropout(family.final(base, words)))


def encoder_layers(
    model: nn.Module,
    hidden: torch.Tensor,
    attention_mask: torch.Tensor,
    start: int,
    stop: int | None = None,
) -> torch.Tensor:
    """Layers [start, stop) (stop: the last) on `hidden` (B, T, H), in the model's current mode.

    Running [0, k) and then [k, L) is the same sequence of operations as [0, L): the per-batch context
    (masks, positions) depends only on the mask and the hidden states' shape, dtype and device."""
    base = model.base_model
    family = family_of(base)
    stop = len(family.layers(base)) if stop is None else stop
    if start >= stop:
        return hidden
    context = family.context(base, hidden, attention_mask)
    for i in range(start, stop):
        hidden = family.layer(base, i, hidden, context)
    return hidden


def embed(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """The embedding output; `word_logits(model, embed(...), mask, 0, ...)` is the full forward."""
    base = model.base_model
    return family_of(base).embed(base, input_ids, attention_mask)


def save_tagger(
    model: nn.Module, tokenizer: Any, out_dir: Path, metadata: dict[str, Any], *, base: Path | None = None
) -> Path:
    """Write a `save_pretrained` folder + tokenizer + unitrans.json; unitrans.json goes last, atomically,
    so a folder with it is always complete. Every file and folder gets the umask's mode (the temporary
    folder is 0700 and some writers make 0600 files; what is moved out of it would keep those).

    With `base` (a bare encoder folder) the checkpoint is compact instead (`unitrans.model.compact`):
    config.json and the delta against `base`, no tokenizer (the base's is used), no full weights."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / METADATA_FILE).unlink(missing_ok=True)
    metadata = {k: v for k, v in metadata.items() if k != COMPACT_KEY}
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".saving-") as tmp:
        if base is None:
            with quiet_transformers():  # no "Writing model shards" bar
                model.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
        else:
            metadata[COMPACT_KEY] = save_compact(model, Path(tmp), base)
        stale = (DELTA_FILE,) if base is None else (*_FULL_WEIGHTS, HEAD_FILE)
        for name in stale:  # what a save in the other form left in this folder
            (out_dir / name).unlink(missing_ok=True)
        for item in Path(tmp).iterdir():
            apply_umask_modes(item)
            target = out_dir / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
    write_json_atomic(out_dir / METADATA_FILE, metadata)
    return out_dir


_FULL_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Pretty JSON, written atomically with the umask's mode."""
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
