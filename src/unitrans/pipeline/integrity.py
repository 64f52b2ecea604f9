"""Integrity of finished stage folders: what a stage wrote, and proof that it is still there unchanged.

Why: a cache entry is reused for hours of downstream work, so a truncated model (full disk, a copy cut
short) or a flipped byte must make the stage run again, not silently change every F1 after it. Each
manifest lists the size and SHA-256 of every file its stage produced and carries a digest of its own
content; reuse checks them. `verify = "size"` checks sizes only, for caches of large models on slow
disks. Manifests of older versions have no file list: they cannot be checked, so they are rebuilt.

Nothing here executes what it reads: manifests are JSON, files are only hashed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from unitrans.atomic import default_file_mode, describe_os_error, is_temp_name
from unitrans.errors import UnitransError

MANIFEST = "manifest.json"
VERIFY_MODES = ("full", "size")
"""full: sizes and SHA-256 of every file (the default); size: sizes only (no reading)."""

Signature = tuple[tuple[str, int, int, int, int], ...]


def check_verify_mode(mode: str) -> str:
    if mode not in VERIFY_MODES:
        raise UnitransError(f"expected verify among {', '.join(VERIFY_MODES)}, found {mode!r}")
    return mode


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _files(folder: Path) -> list[tuple[str, Path]]:
    """Regular files under `folder` as (posix relative path, path), sorted, the manifest excluded."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(folder).as_posix()
            if rel != MANIFEST:
                out.append((rel, path))
    return out


def remove_temp_files(folder: Path) -> list[str]:
    """Delete the temporary files of atomic writes that a killed earlier attempt left in a work folder,
    so that they never become part of a finished stage; returns their relative paths."""
    removed = []
    for rel, path in _files(folder):
        if is_temp_name(path.name):
            path.unlink(missing_ok=True)
            removed.append(rel)
    return removed


def record_files(folder: Path) -> dict[str, dict[str, Any]]:
    """Size and SHA-256 of every file in a finished work folder; also gives each file the umask's mode
    (some writers create files through `mkstemp`, 0600), so a shared cache is readable by its users."""
    mode = default_file_mode()
    records = {}
    for rel, path in _files(folder):
        if path.stat().st_mode & 0o777 != mode:
            os.chmod(path, mode)
        records[rel] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    return records


def _canonical(manifest: Mapping[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "digest"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


def seal(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest as it will read back from JSON, with the SHA-256 of its own content added."""
    plain = json.loads(json.dumps(dict(manifest), default=str, ensure_ascii=False))
    plain["digest"] = hashlib.sha256(_canonical(plain).encode("utf-8")).hexdigest()
    return plain


def read_manifest(path: Path, key: str) -> tuple[dict[str, Any] | None, str | None]:
    """(manifest, None) when `path` is an intact manifest of `key`, else (None, what is wrong)."""
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return None, f"no {MANIFEST}"
    except OSError as err:
        return None, f"{MANIFEST} unreadable ({describe_os_error(err)})"
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, f"{MANIFEST} truncated or not JSON"
    if not isinstance(manifest, dict):
        return None, f"{MANIFEST} is not a JSON object"
    if "digest" not in manifest or not isinstance(manifest.get("files"), dict):
        return None, f"{MANIFEST} has no file checksums (written by an older unitrans)"
    if hashlib.sha256(_canonical(manifest).encode("utf-8")).hexdigest() != manifest["digest"]:
        return None, f"{MANIFEST} was modified"
    if manifest.get("key") != key:
        return None, f"{MANIFEST} belongs to another stage key"
    return manifest, None


def _inside(rel: str) -> bool:
    parts = Path(rel).parts
    return bool(parts) and not Path(rel).is_absolute() and ".." not in parts


class FolderCheck:
    """Verifies finished stage folders, remembering (by inode, size and change times) which it already
    hashed, so that a run looking one stage up several times reads its files once."""

    def __init__(self, mode: str = "full") -> None:
        self.mode = check_verify_mode(mode)
        self._seen: dict[Path, Signature] = {}

    def check(self, folder: Path, key: str) -> tuple[dict[str, Any] | None, str | None]:
        """(manifest, None) for an intact folder, (None, what is wrong) for a damaged one."""
        manifest, problem = read_manifest(folder / MANIFEST, key)
        if manifest is None:
            return None, problem
        files: dict[str, Any] = manifest["files"]
        if any(not _inside(rel) or not isinstance(r, dict) for rel, r in files.items()):
            return None, f"{MANIFEST} lists a file outside its folder"
        try:
            signature = self._signature(folder, files)
            if self._seen.get(folder) == signature:
                return manifest, None
            problem = self._compare(folder, files, signature)
        except OSError as err:
            where = os.path.relpath(err.filename, folder) if err.filename else "a file"
            return None, f"{where}: {describe_os_error(err)}"
        if problem is not None:
            self._seen.pop(folder, None)
            return None, problem
        self._seen[folder] = signature
        return manifest, None

    @staticmethod
    def _signature(folder: Path, files: Mapping[str, Any]) -> Signature:
        out = []
        for rel in sorted((*files, MANIFEST)):
            st = os.stat(folder / rel)
            out.append((rel, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        return tuple(out)

    def _compare(self, folder: Path, files: Mapping[str, Any], signature: Signature) -> str | None:
        sizes = {rel: size for rel, _, size, _, _ in signature}
        for rel, record in sorted(files.items()):
            if sizes[rel] != record.get("size"):
                return f"{rel}: size {sizes[rel]}, expected {record.get('size')}"
            if self.mode == "full" and sha256_file(folder / rel) != record.get("sha256"):
                return f"{rel}: content differs from its SHA-256"
        return None
