"""Training configuration: the paper's recipe as defaults, validated, written into every checkpoint."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from unitrans.errors import UnitransError

LOSS_WEIGHTINGS = ("batch", "word")
BATCH_BY = ("sentences", "words")

# Fields added after caches existed enter `results_key` only when they differ from the value they had
# before they existed, so a model trained then keeps its key (its weights are what that value gives).
_KEY_ONLY_IF_CHANGED = {
    "loss_weighting": "batch",
    "batch_by": "sentences",
    "average_last": 0.0,
    "merge_init": 0.0,
    "processes": 1,
}


def check_finite(config: Any) -> None:
    """Reject NaN and ±inf in every float field (or tuple of floats) of a config dataclass.

    Why: NaN compares False with everything, so range checks like `eta < 0` let it through, and one
    NaN setting silently turned a whole run into NaN weights. Checking every float field here, once,
    also covers the settings added later.
    """
    for f in fields(config):
        value = getattr(config, f.name)
        for item in value if isinstance(value, tuple) else (value,):
            real = isinstance(item, numbers.Real) and not isinstance(item, numbers.Integral)
            if real and not math.isfinite(item):
                raise UnitransError(f"expected {f.name} to be a finite number, found {item}")


@dataclass(frozen=True)
class TrainConfig:
    """How to fine-tune a tagger (Wu et al. 2020 settings by default)."""

    encoder: str = field(
        default="me5-small", metadata={"help": "Encoder name (me5-small, a hub name) or a local folder."}
    )
    epochs: int = field(default=3, metadata={"help": "Passes over the training data."})
    lr: float = field(default=5e-5, metadata={"help": "Peak learning rate (teachers 5e-5, student 1e-4)."})
    batch_size: int = field(
        default=32,
        metadata={"help": "Windows (sentences) per optimizer step; with batch_by=words, on average."},
    )
    batch_by: str = field(
        default="words",
        metadata={
            "help": "sentences: batch_size length-sorted windows per step; words: length-sorted batches "
            "of about batch_size × the mean words per window, as many words as a random batch holds."
        },
    )
    warmup_ratio: float = field(default=0.1, metadata={"help": "Share of steps for linear warm-up."})
    weight_decay: float = field(
        default=0.01, metadata={"help": "AdamW weight decay (not on biases or LayerNorm)."}
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0 = off)."})
    seed: int = field(default=42, metadata={"help": "Seed of the head's init, batch order and dropout."})
    freeze_layers: int = field(
        default=3, metadata={"help": "Bottom encoder layers frozen (embeddings always frozen)."}
    )
    max_length: int = field(
        default=128, metadata={"help": "Subwords per window; longer sentences get overlapping windows."}
    )
    dropout: float = field(default=0.1, metadata={"help": "Dropout before the linear head."})
    bf16: bool | None = field(
        default=None,
        metadata={"help": "bf16 autocast with fp32 master weights; None = on where the hardware has it."},
    )
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1 …; None = cuda if any."})
    cache_frozen: bool = field(
        default=True,
        metadata={"help": "Compute the frozen bottom layers once per window instead of at every step."},
    )
    frozen_dropout: bool = field(
        default=False,
        metadata={
            "help": "Keep dropout active in the frozen layers (as the HF recipe does); disables their cache."
        },
    )
    loss_weighting: str = field(
        default="word",
        metadata={
            "help": "batch: each batch's loss is the mean over its words (the HF recipe); word: every word "
            "weighs the same across length-bucketed batches (loss scaled by words in batch / mean)."
        },
    )
    average_last: float = field(
        default=0.0,
        metadata={
            "help": "Save the mean of the weights over this last share of the steps (checkpoint averaging, "
            "Schmidt et al. 2023); 0 = the last step's weights."
        },
    )
    merge_init: float = field(
        default=0.0,
        metadata={
            "help": "After training, blend this share of the init checkpoint's weights into the trained ones "
            "(WiSE-FT, Wortsman et al. 2022): θ = (1 − m)·θ_trained + m·θ_init. Needs an init checkpoint; "
            "0 = the trained weights."
        },
    )
    processes: int = field(
        default=1,
        metadata={
            "help": "CPU processes that share each step's batch (parts side by side, one thread each, "
            "gradients summed in part order): faster than threads for a stage that runs alone; the "
            "numbers depend on this count only, not on threads or timing."
        },
    )
    save_every: int = field(
        default=200, metadata={"help": "Optimizer steps between resume states (also saved each epoch)."}
    )

    def __post_init__(self) -> None:
        check_finite(self)
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.max_grad_norm >= 0, "max_grad_norm must be >= 0"),
            (self.freeze_layers >= 0, "freeze_layers must be >= 0"),
            (self.max_length >= 8, "max_length must be >= 8"),
            (0 <= self.dropout < 1, "dropout must be in [0, 1)"),
            (0 <= self.average_last <= 1, "average_last must be in [0, 1]"),
            (0 <= self.merge_init < 1, "merge_init must be in [0, 1)"),
            (self.save_every >= 1, "save_every must be >= 1"),
            (1 <= self.processes <= 64, "processes must be in [1, 64]"),
            (self.loss_weighting in LOSS_WEIGHTINGS, f"loss_weighting must be one of {LOSS_WEIGHTINGS}"),
            (self.batch_by in BATCH_BY, f"batch_by must be one of {BATCH_BY}"),
        ]
        for ok, message in checks:
            if not ok:
                raise UnitransError(f"invalid training config: {message}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def results_key(self) -> dict[str, Any]:
        """The fields that change the trained weights (not where or how often state is saved)."""
        d = self.to_dict()
        for name in ("device", "save_every", "cache_frozen"):
            d.pop(name)
        for name, default in _KEY_ONLY_IF_CHANGED.items():
            if d[name] == default:
                d.pop(name)
        return d
