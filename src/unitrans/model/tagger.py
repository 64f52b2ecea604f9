"""The tagger: a multilingual encoder, dropout and a linear layer over the labels, softmax per word.

The model *is* a Hugging Face `AutoModelForTokenClassification`, so a checkpoint folder loads with
`transformers.pipeline("token-classification", model=folder)`. What this module adds is the split forward
that makes training fast: the embeddings and the bottom k layers are frozen, so their output for a window
is the same at every step and is computed once (`frozen_states`, no dropout, no grad); training then runs
only the top layers (`word_logits`) and the classifier on first subwords only.

It relies on the BERT-family layout (`base_model.embeddings`, `base_model.encoder.layer`), which covers
BERT, RoBERTa, XLM-R and the E5 encoders.
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
from transformers import AutoModelForTokenClassification, AutoTokenizer, PreTrainedModel
from transformers.masking_utils import create_bidirectional_mask

from unitrans.atomic import write_text_atomic
from unitrans.errors import UnitransError
from unitrans.model.encoders import check_model_folder
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
    architectures = config.get("architectures") or []
    if not isinstance(architectures, list) or not any(
        str(a).endswith("ForTokenClassification") for a in architectures
    ):
        raise UnitransError(f"{folder}: has unitrans.json but no token-classification head in config.json")
    return config


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
) -> tuple[PreTrainedModel, Any]:
    """Load a checkpoint (keeping its head) or an encoder folder (with a new head over `labels`).

    Never runs code from the folder: `trust_remote_code=False`, and a config with `auto_map` is refused.
    """
    source = Path(source)
    if labels is None:
        check_tagger_folder(source)
    elif not (source / "config.json").is_file():
        raise UnitransError(f"{source}: expected a model folder with config.json")
    else:
        check_model_folder(source)
    # The tokenizer first: it is cheap, and a broken one then fails before the weights load.
    tokenizer = _loading(
        source, "tokenizer", lambda: AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    )
    if not getattr(tokenizer, "is_fast", False):
        raise UnitransError(f"{source}: a fast tokenizer is needed to align subwords with words")
    if is_checkpoint(source):
        model = _loading(
            source,
            "model",
            lambda: AutoModelForTokenClassification.from_pretrained(
                source, attn_implementation="sdpa", trust_remote_code=False
            ),
        )
        have = [model.config.id2label[i] for i in range(model.config.num_labels)]
        if labels is not None and list(labels) != have:
            raise UnitransError(
                f"{source}: checkpoint labels {have} differ from the requested {list(labels)}"
            )
    else:
        assert labels is not None  # check_tagger_folder refused a bare encoder without labels
        with quiet_transformers():  # the new head is reported MISSING, the unused pooler UNEXPECTED
            model = _loading(
                source,
                "encoder",
                lambda: AutoModelForTokenClassification.from_pretrained(
                    source,
                    num_labels=len(labels),
                    id2label=dict(enumerate(labels)),
                    label2id={lab: i for i, lab in enumerate(labels)},
                    classifier_dropout=dropout,
                    attn_implementation="sdpa",
                    trust_remote_code=False,
                ),
            )
    _parts(model)
    return model, tokenizer


def _parts(model: PreTrainedModel) -> tuple[nn.Module, nn.ModuleList]:
    base = model.base_model
    embeddings = getattr(base, "embeddings", None)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if embeddings is None or not isinstance(layers, nn.ModuleList):
        raise UnitransError(
            f"{type(model).__name__}: unsupported encoder layout "
            "(needs BERT-style embeddings + encoder.layer)"
        )
    return embeddings, layers


def num_layers(model: PreTrainedModel) -> int:
    return len(_parts(model)[1])


def freeze_bottom(model: PreTrainedModel, k: int) -> None:
    """Freeze the embeddings and the bottom k layers (the paper's k = 3)."""
    embeddings, layers = _parts(model)
    if not 0 <= k <= len(layers):
        raise UnitransError(f"freeze_layers must be between 0 and {len(layers)}, got {k}")
    for module in (embeddings, *layers[:k]):
        for p in module.parameters():
            p.requires_grad_(False)


def _mask(model: PreTrainedModel, hidden: torch.Tensor, attention_mask: torch.Tensor):
    return create_bidirectional_mask(
        config=model.base_model.config, inputs_embeds=hidden, attention_mask=attention_mask
    )


@torch.no_grad()
def frozen_states(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    k: int,
    *,
    dropout: bool = False,
) -> torch.Tensor:
    """Output of the embeddings + bottom k layers; without dropout (cacheable) unless `dropout`."""
    embeddings, layers = _parts(model)
    was_training = model.training
    model.train(dropout)
    try:
        hidden = embeddings(input_ids=input_ids)
        mask = _mask(model, hidden, attention_mask)
        for layer in layers[:k]:
            hidden = layer(hidden, mask)
    finally:
        model.train(was_training)
    return hidden


def word_logits(
    model: PreTrainedModel,
    hidden: torch.Tensor,
    attention_mask: torch.Tensor,
    first_layer: int,
    flat_positions: torch.Tensor,
) -> torch.Tensor:
    """Run layers[first_layer:] on `hidden` (B, T, H), then the head on the given first subwords.

    `flat_positions` index the flattened (B*T) sequence; the result is (N, labels).
    """
    _, layers = _parts(model)
    mask = _mask(model, hidden, attention_mask)
    for layer in layers[first_layer:]:
        hidden = layer(hidden, mask)
    words = hidden.reshape(-1, hidden.shape[-1]).index_select(0, flat_positions)
    return model.classifier(model.dropout(words))


def embed(model: PreTrainedModel, input_ids: torch.Tensor) -> torch.Tensor:
    return _parts(model)[0](input_ids=input_ids)


def save_tagger(model: PreTrainedModel, tokenizer: Any, out_dir: Path, metadata: dict[str, Any]) -> Path:
    """Write a `save_pretrained` folder + tokenizer + unitrans.json; unitrans.json goes last, atomically,
    so a folder with it is always complete. Every file and folder gets the umask's mode (the temporary
    folder is 0700 and some writers make 0600 files; what is moved out of it would keep those)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / METADATA_FILE).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".saving-") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for item in Path(tmp).iterdir():
            _umask_modes(item)
            target = out_dir / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
    write_json_atomic(out_dir / METADATA_FILE, metadata)
    return out_dir


def _umask_modes(path: Path) -> None:
    """Give `path` (and, for a folder, everything under it) the modes `open`/`mkdir` give under the umask."""
    mask = os.umask(0)  # the only portable way to read it; restored at once
    os.umask(mask)
    file_mode, dir_mode = 0o666 & ~mask, 0o777 & ~mask
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            os.chmod(root, dir_mode)
            for name in files:
                os.chmod(os.path.join(root, name), file_mode)
            for name in dirs:
                os.chmod(os.path.join(root, name), dir_mode)
    elif path.is_file() and not path.is_symlink():
        os.chmod(path, file_mode)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Pretty JSON, written atomically with the umask's mode."""
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
