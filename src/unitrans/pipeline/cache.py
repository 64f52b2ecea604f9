"""Content-addressed stage cache: a finished stage is never computed twice.

A stage's key hashes its name, its own settings, the keys of its inputs and the package version, so a
change anywhere upstream re-runs exactly the stages downstream of it. Each output lives in its own folder
`<root>/<stage>/<key>` with a `manifest.json` (settings, inputs, seed, timings, metrics). The folder is
built under a temporary name and renamed into place only when the stage finished, so a killed run leaves
no half-written output and the next run resumes at the first unfinished stage. Reuse verifies the
folder against its manifest (see `integrity`); a damaged entry is rebuilt, with one warning.

Hand-written because workflow engines (snakemake, DVC, ...) would make users set up a project around
them; this is ~250 lines (with `integrity`) and only needs the standard library.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unitrans import __version__
from unitrans.atomic import write_text_atomic
from unitrans.pipeline.integrity import MANIFEST, FolderCheck, record_files, remove_temp_files, seal

logger = logging.getLogger(__name__)

__all__ = ["MANIFEST", "StageCache", "StageRecord", "hash_rows", "hash_text", "stable_json"]


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
    cores: int = 1
    """CPU cores it ran on (a student alone: all of them), so that time estimates compare like with like."""


class StageCache:
    """Folders of finished stages under `root`, addressed by key; see the module docstring.

    `verify` (full | size) says how reuse checks a folder; it never enters a key.
    """

    def __init__(self, root: Path, *, version: str = __version__, verify: str = "full") -> None:
        self.root = Path(root)
        self.version = version
        self.check = FolderCheck(verify)

    @property
    def verify(self) -> str:
        return self.check.mode

    def key(self, stage: str, settings: Mapping[str, Any], inputs: Mapping[str, str]) -> str:
        """Key of a stage: hashes its name, settings, input keys and the package version."""
        return hash_text(stage, stable_json(dict(settings)), stable_json(dict(inputs)), self.version)

    def folder(self, stage: str, key: str) -> Path:
        return self.root / stage / key[:24]

    def partial_folder(self, stage: str, key: str) -> Path:
        """Where an unfinished stage works (renamed to `folder` when it finishes)."""
        return self.root / stage / f".partial-{key[:24]}"

    def inspect(self, stage: str, key: str) -> tuple[dict[str, Any] | None, str | None]:
        """(manifest, None) for a finished, intact stage; (None, None) when it never finished;
        (None, what is wrong) for a damaged entry."""
        folder = self.folder(stage, key)
        if not folder.is_dir():
            return None, None
        return self.check.check(folder, key)

    def manifest(self, stage: str, key: str) -> dict[str, Any] | None:
        """The manifest of a finished, intact stage, or None."""
        return self.inspect(stage, key)[0]

    def lookup(
        self, stage: str, settings: Mapping[str, Any], inputs: Mapping[str, str], *, label: str = ""
    ) -> StageRecord | None:
        """The record of a finished, intact stage, or None; never builds anything.

        A damaged entry is removed here (with its one warning) unless another run holds its lock, so
        that whoever rebuilds it next finds a clean slate.
        """
        key = self.key(stage, settings, inputs)
        found, problem = self.inspect(stage, key)
        if found is not None:
            return self._cached(stage, label, key, found)
        if problem is not None:
            with self._lock(stage, key, wait=False) as held:
                if held:
                    found, problem = self.inspect(stage, key)
                    if found is not None:
                        return self._cached(stage, label, key, found)
                    if problem is not None:
                        self._discard(stage, key, problem)
        return None

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
        runtime: Mapping[str, Any] | None = None,
    ) -> StageRecord:
        """Return the finished stage's record, running `build(work_folder)` first when it is not cached.

        Runs sharing one cache wait for each other per stage (a lock file), never build it twice.

        `build` writes its outputs into the folder it is given and returns metrics for the manifest. The
        work folder is renamed to the stage's folder when `build` returns. A `resumable` stage keeps its
        work folder when interrupted, so the next run's `build` can pick up from what it left there
        (training saves its optimizer state); other stages start from an empty folder. `runtime` (thread
        count, ...) goes into the manifest for the record, not into the key.
        """
        key = self.key(stage, settings, inputs)
        found, _ = self.inspect(stage, key)
        if found is not None:
            return self._cached(stage, label, key, found)
        with self._lock(stage, key, wait=True):
            found, problem = self.inspect(stage, key)  # another run may have built it meanwhile
            if found is not None:
                return self._cached(stage, label, key, found)
            if problem is not None:
                self._discard(stage, key, problem)
            return self._build(stage, settings, inputs, build, key, label, seed, resumable, runtime or {})

    @contextlib.contextmanager
    def _lock(self, stage: str, key: str, *, wait: bool) -> Iterator[bool]:
        """Hold the stage's lock file (yields True), or yield False at once if `wait` is off and another
        run holds it."""
        locks = self.root / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / f"{stage}-{key[:24]}", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True

    def _discard(self, stage: str, key: str, problem: str) -> None:
        """Remove a damaged entry (called under its lock): renamed aside first, so the stage's folder is
        never half-deleted."""
        final = self.folder(stage, key)
        logger.warning("%s: damaged cache entry (%s); rebuilding it", final, problem)
        aside = final.with_name(f".damaged-{key[:24]}-{os.getpid()}")
        shutil.rmtree(aside, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.replace(final, aside)
        shutil.rmtree(aside, ignore_errors=True)

    def _cached(self, stage: str, label: str, key: str, manifest: Mapping[str, Any]) -> StageRecord:
        seconds = float(manifest.get("seconds", 0.0))
        metrics = dict(manifest.get("metrics") or {})
        cores = _cores((manifest.get("runtime") or {}).get("cores", 1))
        return StageRecord(stage, label or stage, key, self.folder(stage, key), True, seconds, metrics, cores)

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
        runtime: Mapping[str, Any],
    ) -> StageRecord:
        final = self.folder(stage, key)
        tmp = self.partial_folder(stage, key)
        if tmp.exists() and not resumable:
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True, exist_ok=True)
        started = time.time()
        try:
            metrics = dict(build(tmp) or {})
            seconds = time.time() - started
            stray = remove_temp_files(tmp)  # e.g. `.train-state.pt.x1y2` of a killed earlier attempt
            if stray:
                logger.debug("%s: removed temporary files %s", tmp, ", ".join(stray))
            manifest = seal(
                {
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
                    "runtime": dict(runtime),
                    "files": record_files(tmp),
                }
            )
            text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
            write_text_atomic(tmp / MANIFEST, text)
            if final.exists():  # a stale folder (removed above when damaged): replace it
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            if not resumable:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        cores = _cores(runtime.get("cores", 1))
        return StageRecord(stage, label or stage, key, final, False, seconds, manifest["metrics"], cores)


def _cores(value: Any) -> int:
    """A manifest's core count (absent in older manifests: 1)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1
