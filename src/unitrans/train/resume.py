"""Resume state of an interrupted training: trainable weights, optimizer, scheduler and step.

Only what training changes is stored, plus the running weight average if there is one (the frozen
embeddings and bottom layers come back from the encoder or `--init` folder), which keeps the file ~4x
smaller than a full checkpoint for me5-small. Batch order
and dropout are pure functions of (seed, epoch, step), so the step count is all the RNG state needed.
Writes are atomic (temp file + rename): a crash mid-save leaves the previous state intact.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unitrans.train.averaging import TailAverage

logger = logging.getLogger(__name__)

STATE_FILE = "train-state.pt"


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
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {
        "key": key,
        "step": step,
        "trainable": trainable_state(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "average": None if average is None else average.state_dict(),
    }
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{STATE_FILE}.")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, out_dir / STATE_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.debug("saved resume state at step %d to %s", step, out_dir / STATE_FILE)


def load_state(
    out_dir: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    key: str,
    average: TailAverage | None = None,
) -> int:
    """Restore a matching resume state; returns the step to continue from (0 when there is none)."""
    path = out_dir / STATE_FILE
    if not path.is_file():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("key") != key:
        logger.warning("%s belongs to another run (config or data changed); starting afresh", path)
        return 0
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state["trainable"].items():
            params[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if average is not None and state.get("average") is not None:
        average.load_state_dict(state["average"])
    logger.info("resuming from step %d (%s)", state["step"], path)
    return int(state["step"])


def clear_state(out_dir: Path) -> None:
    (out_dir / STATE_FILE).unlink(missing_ok=True)
