"""Resume state of an interrupted training: trainable weights, optimizer, scheduler and step.

Only what training changes is stored, plus the running weight average if there is one (the frozen
embeddings and bottom layers come back from the encoder or `--init` folder), which keeps the file ~4x
smaller than a full checkpoint for me5-small. Batch order
and dropout are pure functions of (seed, epoch, step), so the step count is all the RNG state needed.
Writes are atomic (temp file + rename, `unitrans.atomic`): a crash mid-save leaves the previous state
intact; temp files a killed save left behind are removed when training starts and when it ends.

Reading never runs code: the file is loaded with `torch.load(weights_only=True)` (tensors and plain
containers only). A state that does not load that way, or does not fit the model, is ignored with one
warning and training starts afresh: losing a resume costs time, running a planted pickle costs the
machine.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import shutil
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unitrans.atomic import atomic_path
from unitrans.train.averaging import TailAverage

logger = logging.getLogger(__name__)

STATE_FILE = "train-state.pt"
TEMP_PREFIX = f".{STATE_FILE}."  # what `atomic_path` (and older unitrans' mkstemp) named the temp files
SAFE_LOAD_TORCH = (2, 6)  # torch < 2.6 has a known weights_only bypass (CVE-2025-32434)


def fingerprint(parts: Iterable[Any]) -> str:
    """Hash of everything that determines the trained weights (config, data, targets, init)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(str(part.dtype).encode())
            h.update(str(part.shape).encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the weights training changes (the frozen ones come back from the source folder)."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def save_state(
    out_dir: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    step: int,
    key: str,
    average: TailAverage | None = None,
) -> None:
    """Write the resume state atomically, with the umask's mode (mkstemp's 0600 would hide it)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {
        "key": key,
        "step": step,
        "trainable": trainable_state(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "average": None if average is None else average.state_dict(),
    }
    with atomic_path(out_dir / STATE_FILE) as tmp:
        torch.save(state, tmp)
    logger.debug("saved resume state at step %d to %s", step, out_dir / STATE_FILE)


def _torch_version() -> tuple[int, ...]:
    parts = []
    for piece in torch.__version__.split("+")[0].split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _read_state(path: Path) -> dict[str, Any]:
    """The state as plain data, or ValueError; `weights_only=True` refuses any pickled object or code."""
    if _torch_version() < SAFE_LOAD_TORCH:
        raise ValueError(f"torch {torch.__version__} cannot load it safely (needs torch >= 2.6)")
    try:
        with warnings.catch_warnings():  # torch's notes on odd pickles would add lines to the one warning
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, zip/EOF errors of a truncated file, garbage: all the same
        text = str(err).strip()
        raise ValueError(text.splitlines()[0][:200] if text else type(err).__name__) from None
    if not isinstance(state, dict):
        raise ValueError("not a unitrans resume state")
    return state


def _check_fits(state: dict[str, Any], model: nn.Module, average: TailAverage | None) -> None:
    """Raise ValueError unless the saved tensors match the model's trainable weights one for one."""
    for name in ("step", "trainable", "optimizer", "scheduler"):
        if name not in state:
            raise ValueError(f"no {name!r} entry")
    step = state["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError("bad step count")
    trainable = state["trainable"]
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not isinstance(trainable, dict) or set(trainable) != set(params):
        raise ValueError("the saved weights are not this model's trainable weights")
    for name, value in trainable.items():
        if not isinstance(value, torch.Tensor) or value.shape != params[name].shape:
            raise ValueError(f"weight {name} has the wrong shape")
    if average is not None and state.get("average") is not None:
        saved = state["average"]
        if not isinstance(saved, dict) or not isinstance(saved.get("sums"), dict):
            raise ValueError("bad weight-average entry")


def load_state(
    out_dir: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    key: str,
    average: TailAverage | None = None,
) -> int:
    """Restore a matching resume state; returns the step to continue from (0 when there is none).

    A state that cannot be read safely or does not fit is ignored with one warning: training starts
    afresh, with the model, optimizer, scheduler and average as they were before the attempt.
    """
    path = out_dir / STATE_FILE
    if not path.is_file():
        return 0
    try:
        state = _read_state(path)
    except (ValueError, OSError) as err:
        logger.warning("%s: ignored, not a loadable resume state (%s); starting afresh", path, err)
        return 0
    if state.get("key") != key:
        logger.warning("%s belongs to another run (config or data changed); starting afresh", path)
        return 0
    before = (
        trainable_state(model),
        copy.deepcopy(optimizer.state_dict()),
        copy.deepcopy(scheduler.state_dict()),
        None if average is None else copy.deepcopy(average.state_dict()),
    )
    try:
        _check_fits(state, model, average)
        _apply(state, model, optimizer, scheduler, average)
    except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as err:
        _apply(
            {"trainable": before[0], "optimizer": before[1], "scheduler": before[2], "average": before[3]},
            model,
            optimizer,
            scheduler,
            average,
        )
        logger.warning("%s: ignored, it does not fit this model (%s); starting afresh", path, err)
        return 0
    logger.info("resuming from step %d (%s)", state["step"], path)
    return int(state["step"])


def _apply(
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    average: TailAverage | None,
) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state["trainable"].items():
            params[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if average is not None and state.get("average") is not None:
        average.load_state_dict(state["average"])


def remove_stale_temps(out_dir: Path) -> int:
    """Delete the temp files of state saves that were killed midway (~100 MB each); returns how many.

    Called when training starts and when it ends, so they never end up inside a finished model folder.
    Only names this module creates are touched (`.train-state.pt.<random>[.tmp]`).
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return 0
    removed = 0
    for item in out_dir.iterdir():
        if not item.name.startswith(TEMP_PREFIX):
            continue
        try:
            if item.is_dir() and not item.is_symlink():
                shutil.rmtree(item)
            else:
                item.unlink()
        except FileNotFoundError:
            continue
        removed += 1
    if removed:
        logger.info("removed %d leftover temp file(s) of interrupted state saves in %s", removed, out_dir)
    return removed


def clear_state(out_dir: Path) -> None:
    """Training finished: the state and any leftover temp files of it go."""
    (out_dir / STATE_FILE).unlink(missing_ok=True)
    remove_stale_temps(out_dir)
