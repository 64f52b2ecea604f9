"""Compact checkpoints: only what training changed, plus a verified reference to the base encoder.

Why: a tagger trains its top layers and head; the embeddings and bottom layers stay exactly the encoder's.
A full checkpoint repeats those frozen weights in fp32 for every cached model (~465 MB each for
me5-small), so the pipeline's cache stores instead:

- `config.json`: the tagger's config (labels, dropout, architecture), as `save_pretrained` writes it;
- `delta.safetensors`: every tensor of the model's state that is trainable or differs bit for bit from
  the base encoder's (the top layers, the head, any buffer that changed), fp32 as trained;
- in `unitrans.json` under "compact": the base encoder's folder, the SHA-256 of its weights files
  (`weights_hash`, memoized per folder) and the names of the frozen tensors taken from it.

Loading rebuilds the model from the base encoder with the checkpoint's config, then puts the delta in:
the result is the trained model bit for bit, so predictions equal those of a full checkpoint. A base
whose weights hash differs is refused in one line naming both. The tokenizer is the base's (training
never changes it). Nothing read here runs code: JSON, safetensors, `trust_remote_code=False`.
Exported folders are complete (`unitrans.pipeline.export` materializes them).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from unitrans.atomic import atomic_path, write_text_atomic
from unitrans.errors import UnitransError
from unitrans.model.architectures import Family, family_of

logger = logging.getLogger(__name__)

DELTA_FILE = "delta.safetensors"
COMPACT_KEY = "compact"
FORMAT = 1
WEIGHT_SUFFIXES = (".safetensors", ".bin")
_MEMO: dict[str, tuple[Any, str]] = {}


def compact_info(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The "compact" section of a checkpoint's unitrans.json, or None for a full checkpoint."""
    info = metadata.get(COMPACT_KEY)
    return info if isinstance(info, dict) else None


def _weight_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.name.endswith(WEIGHT_SUFFIXES) and not p.name.startswith(".") and p.is_file()
    )


def _hash_store(folder: Path) -> Path:
    from unitrans.model.me5 import default_cache_root

    key = hashlib.sha256(str(folder).encode("utf-8")).hexdigest()[:32]
    env = os.environ.get("UNITRANS_WEIGHT_HASHES")  # the tests point it at a temporary folder
    root = Path(env).expanduser() if env else default_cache_root().parent / "weight-hashes"
    return root / f"{key}.json"


def weights_hash(folder: Path) -> str:
    """SHA-256 over the encoder folder's weights files (name and content of each), memoized.

    Hashing me5-small's 470 MB takes seconds, so the digest is kept in memory and in a small sidecar
    under the unitrans cache, valid while every weights file keeps its size, inode and mtime.
    """
    folder = Path(folder).resolve()
    files = _weight_files(folder) if folder.is_dir() else []
    if not files:
        raise UnitransError(f"{folder}: no weights files to identify the base encoder by")
    stats = [(p.name, p.stat()) for p in files]
    signature = [[name, st.st_size, st.st_ino, st.st_mtime_ns] for name, st in stats]
    memo = _MEMO.get(str(folder))
    if memo is not None and memo[0] == signature:
        return memo[1]
    store = _hash_store(folder)
    try:
        saved = json.loads(store.read_text(encoding="utf-8"))
        if saved.get("folder") == str(folder) and saved.get("files") == signature:
            _MEMO[str(folder)] = (signature, str(saved["sha256"]))
            return str(saved["sha256"])
    except (OSError, ValueError, AttributeError, KeyError):
        pass
    digest = hashlib.sha256()
    for path in files:
        with open(path, "rb") as f:
            digest.update(f"{path.name}\0{hashlib.file_digest(f, 'sha256').hexdigest()}\n".encode())
    value = digest.hexdigest()
    _MEMO[str(folder)] = (signature, value)
    record = {"folder": str(folder), "files": signature, "sha256": value}
    try:
        write_text_atomic(store, json.dumps(record) + "\n")
    except OSError as err:  # a read-only cache only costs the hash again next process
        logger.debug("cannot memoize the weights hash in %s (%s)", store, err)
    return value


def rebuild(base: Path, config: Any, family: Family, dropout: float) -> nn.Module:
    """The tagger architecture of `config` with the base encoder's weights (a fresh head).

    The global RNG is left as it was: the head's random init is overwritten by the delta anyway.
    """
    from transformers import AutoModel, AutoModelForTokenClassification

    from unitrans.model.heads import EncoderTagger
    from unitrans.model.runtime import quiet_transformers

    with torch.random.fork_rng(devices=[]), quiet_transformers():
        if family.head == "unitrans":
            encoder = AutoModel.from_pretrained(
                base,
                config=config,
                attn_implementation=family.attn_implementation,
                trust_remote_code=False,
            )
            return EncoderTagger(encoder, dropout)
        return AutoModelForTokenClassification.from_pretrained(
            base, config=config, attn_implementation=family.attn_implementation, trust_remote_code=False
        )


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(_bits(a), _bits(b))


def _saved_config(model: nn.Module) -> Any:
    """The config `save_pretrained` would write: the model class as its architecture."""
    from unitrans.model.heads import EncoderTagger

    inner = model.model if isinstance(model, EncoderTagger) else model
    config = copy.deepcopy(inner.config)
    config.architectures = [type(inner).__name__]
    return config


def save_compact(model: nn.Module, folder: Path, base: Path) -> dict[str, Any]:
    """Write config.json and the delta into `folder`; returns the "compact" section for unitrans.json.

    The delta is measured against a rebuild from `base`, so it holds exactly what a load needs.
    """
    folder, base = Path(folder), Path(base).resolve()
    family = family_of(model.base_model)
    config = _saved_config(model)
    dropout = float(model.dropout.p)
    reference = rebuild(base, copy.deepcopy(config), family, dropout).state_dict()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    delta, frozen = {}, []
    for name, tensor in model.state_dict().items():
        if name in trainable or name not in reference or not _same(tensor, reference[name]):
            delta[name] = tensor.detach().cpu().contiguous().clone()
        else:
            frozen.append(name)
    digest = weights_hash(base)
    config.save_pretrained(folder)
    with atomic_path(folder / DELTA_FILE) as tmp:
        # one metadata key: safetensors writes several in varying order, and the bytes must not vary
        save_file(delta, str(tmp), metadata={"base_sha256": digest})
    return {
        "format": FORMAT,
        "delta": DELTA_FILE,
        "base_folder": str(base),
        "base_sha256": digest,
        "head": family.head,
        "dropout": dropout,
        "frozen": sorted(frozen),
    }


def base_folder(folder: Path, metadata: dict[str, Any]) -> Path:
    """The compact checkpoint's base encoder, checked to have the weights it was trained on."""
    info = compact_info(metadata) or {}
    want = str(info.get("base_sha256", ""))
    base = Path(str(info.get("base_folder", "")))
    if not base.is_dir():
        raise UnitransError(
            f"{folder}: compact checkpoint needs its base encoder {base} (sha256 {want[:12]}), which is "
            "missing; restore it, or use an exported (complete) model"
        )
    have = weights_hash(base)
    if have != want:
        raise UnitransError(
            f"{folder}: compact checkpoint was made on base encoder weights sha256 {want[:12]}, "
            f"but {base} has {have[:12]}"
        )
    return base


def load_compact(folder: Path, metadata: dict[str, Any], family: Family) -> nn.Module:
    """Rebuild the full tagger: the base encoder (hash verified), this folder's config, the delta."""
    from transformers import AutoConfig

    folder = Path(folder)
    info = compact_info(metadata) or {}
    base = base_folder(folder, metadata)
    path = folder / str(info.get("delta", DELTA_FILE))
    if path.parent != folder or not path.is_file():
        raise UnitransError(f"{folder}: compact checkpoint without its delta ({DELTA_FILE})")
    with safe_open(str(path), framework="pt") as f:
        if (f.metadata() or {}).get("base_sha256") != info.get("base_sha256"):
            raise UnitransError(f"{path}: delta belongs to another base encoder than unitrans.json names")
        delta = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open has no iteration)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    model = rebuild(base, config, family, float(info.get("dropout", 0.1)))
    state = model.state_dict()
    frozen = set(info.get("frozen") or [])
    if set(delta) & frozen or set(delta) | frozen != set(state):
        raise UnitransError(
            f"{folder}: delta and frozen names do not cover this model's weights (a damaged checkpoint?)"
        )
    for name, tensor in delta.items():
        if tensor.shape != state[name].shape or tensor.dtype != state[name].dtype:
            want = f"{tuple(state[name].shape)} {state[name].dtype}"
            raise UnitransError(f"{path}: {name} is {tuple(tensor.shape)} {tensor.dtype}, expected {want}")
    model.load_state_dict(delta, strict=False)
    return model


def base_for_training(source: Path, encoder_name: str) -> Path | None:
    """The bare encoder a compact save refers to: the source itself, a compact init's base, or the
    encoder its metadata names; None when that is not a bare encoder folder (then save in full)."""
    from unitrans.model.tagger import is_checkpoint, read_metadata

    source = Path(source)
    if not is_checkpoint(source):
        return source
    info = compact_info(read_metadata(source))
    if info is not None:
        return Path(info["base_folder"])
    from unitrans.model.encoders import resolve_encoder

    try:
        base = Path(resolve_encoder(encoder_name))
    except UnitransError:
        return None
    return None if is_checkpoint(base) or not os.path.isdir(base) else base
