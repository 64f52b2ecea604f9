"""Content-addressed stage cache: a finished stage is never computed twice.

A stage's key hashes its name, its own settings, the keys of its inputs and the package version, so a
change anywhere upstream re-runs exactly the stages downstream of it. Each output lives in its own folder
`<root>/<stage>/<key>` with a `manifest.json` (settings, inputs, seed, timings, metrics). The folder is
built under a temporary name and renamed into place only when the stage finished, so a killed run leaves
no half-written output and the next run resumes at the first unfinished stage.

Hand-written because workflow engines (snakemake, DVC, ...) would make users set up a project around
them; this is ~150 lines and only needs the standard library.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unitrans import __version__

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def stable_json(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces) of settings; Paths and tuples become strings and lists."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


def hash_text(*parts: str) -> str:
    """Hex SHA-256 of the parts, each length-prefixed so that ("ab", "c") and ("a", "bc") differ."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8")
        h.update(f"{len(data)}:".encode())
        h.update(data)
    return h.hexdigest()


def hash_rows(rows: Iterable[Iterable[str]]) -> str:
    """Hash of a corpus given as rows of strings (e.g. the words of each sentence)."""
    h = hashlib.sha256()
    for row in rows:
        h.update(stable_json(list(row)).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


@dataclass(frozen=True)
class StageRecord:
    """What happened to one stage in this run: computed or taken from the cache, and how long it took."""

    stage: str
    label: str
    key: str
    folder: Path
    cached: bool
    seconds: float
    metrics: dict[str, Any] = field(default_factory=dict)


class StageCache:
    """Folders of finished stages under `root`, addressed by key; see the module docstring."""

    def __init__(self, root: Path, *, version: str = __version__) -> None:
        self.root = Path(root)
        self.version = version

    def key(self, stage: str, settings: Mapping[str, Any], inputs: Mapping[str, str]) -> str:
        """Key of a stage: hashes its name, settings, input keys and the package version."""
        return hash_text(stage, stable_json(dict(settings)), stable_json(dict(inputs)), self.version)

    def folder(self, stage: str, key: str) -> Path:
        return self.root / stage / key[:24]

    def partial_folder(self, stage: str, key: str) -> Path:
        """Where an unfinished stage works (renamed to `folder` when it finishes)."""
        return self.root / stage / f".partial-{key[:24]}"

    def manifest(self, stage: str, key: str) -> dict[str, Any] | None:
        """The manifest of a finished stage, or None when it has not finished."""
        path = self.folder(stage, key) / MANIFEST
        if not path.is_file():
            return None
        manifest = json.loads(path.read_text(encoding="utf-8"))
        return manifest if manifest.get("key") == key else None

    def lookup(
        self, stage: str, settings: Mapping[str, Any], inputs: Mapping[str, str], *, label: str = ""
    ) -> StageRecord | None:
        """The record of a finished stage, or None; never builds anything."""
        key = self.key(stage, settings, inputs)
        found = self.manifest(stage, key)
        return None if found is None else self._cached(stage, label, key, found)

    def run(
        self,
        stage: str,
        settings: Mapping[str, Any],
        inputs: Mapping[str, str],
        build: Callable[[Path], Mapping[str, Any] | None],
        *,
        label: str = "",
        seed: int | None = None,
        resumable: bool = False,
    ) -> StageRecord:
        """Return the finished stage's record, running `build(work_folder)` first when it is not cached.

        Runs sharing one cache wait for each other per stage (a lock file), never build it twice.

        `build` writes its outputs into the folder it is given and returns metrics for the manifest. The
        work folder is renamed to the stage's folder when `build` returns. A `resumable` stage keeps its
        work folder when interrupted, so the next run's `build` can pick up from what it left there
        (training saves its optimizer state); other stages start from an empty folder.
        """
        key = self.key(stage, settings, inputs)
        final = self.folder(stage, key)
        found = self.manifest(stage, key)
        if found is not None:
            return self._cached(stage, label, key, found)
        final.parent.mkdir(parents=True, exist_ok=True)
        locks = self.root / ".locks"
        locks.mkdir(exist_ok=True)
        with open(locks / f"{stage}-{key[:24]}", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another run sharing the cache may be building this stage
            found = self.manifest(stage, key)
            if found is not None:
                return self._cached(stage, label, key, found)
            return self._build(stage, settings, inputs, build, key, label, seed, resumable)

    def _cached(self, stage: str, label: str, key: str, manifest: Mapping[str, Any]) -> StageRecord:
        seconds = float(manifest.get("seconds", 0.0))
        metrics = dict(manifest.get("metrics") or {})
        return StageRecord(stage, label or stage, key, self.folder(stage, key), True, seconds, metrics)

    def _build(
        self,
        stage: str,
        settings: Mapping[str, Any],
        inputs: Mapping[str, str],
        build: Callable[[Path], Mapping[str, Any] | None],
        key: str,
        label: str,
        seed: int | None,
        resumable: bool,
    ) -> StageRecord:
        final = self.folder(stage, key)
        tmp = self.partial_folder(stage, key)
        if tmp.exists() and not resumable:
            shutil.rmtree(tmp)
        tmp.mkdir(exist_ok=True)
        started = time.time()
        try:
            metrics = dict(build(tmp) or {})
            seconds = time.time() - started
            manifest = {
                "stage": stage,
                "label": label or stage,
                "key": key,
                "version": self.version,
                "settings": dict(settings),
                "inputs": dict(inputs),
                "seed": seed,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                "seconds": round(seconds, 3),
                "metrics": metrics,
            }
            (tmp / MANIFEST).write_text(
                json.dumps(manifest, indent=2, sort_keys=True, default=str, ensure_ascii=False) + "\n",
                encoding="utf-8",
            )
            if final.exists():  # a stale, unfinished folder (no valid manifest): replace it
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            if not resumable:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        return StageRecord(stage, label or stage, key, final, False, seconds, metrics)
