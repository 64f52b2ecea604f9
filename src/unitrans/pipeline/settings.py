"""`--set NAME=VALUE`: strings from the command line typed by the PipelineConfig field they name.

Kept out of `config` so the config module holds only what a run's settings are; this one only how a
command line spells them. A wrong name or value is one line naming the field and what it expects.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from unitrans.errors import UnitransError
from unitrans.pipeline.config import PipelineConfig


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """`NAME=VALUE` strings (the CLI's `--set`) as typed overrides of PipelineConfig fields."""
    types = {f.name: f.type for f in fields(PipelineConfig) if f.name != "preset"}  # --preset sets it
    out: dict[str, Any] = {}
    for pair in pairs:
        name, eq, raw = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not eq or name not in types or name == "preset":
            raise UnitransError(
                f"expected --set NAME=VALUE with NAME among {', '.join(types)}, found {pair!r}"
            )
        kind = str(types[name])
        try:
            if kind.startswith("tuple[int"):
                values = raw.replace(",", " ").split()
                out[name] = None if raw.strip().lower() in ("", "none") else tuple(int(v) for v in values)
            elif kind.startswith("tuple"):
                out[name] = tuple(v for v in raw.replace(",", " ").split() if v)
            elif kind == "int":
                out[name] = int(raw)
            elif kind == "float":
                out[name] = float(raw)
            elif kind == "bool":
                out[name] = _boolean(raw)
            elif "Path" in kind:
                none = "None" in kind and raw.strip().lower() in ("", "none")
                out[name] = None if none else Path(raw)
            else:
                out[name] = raw
        except ValueError:
            raise UnitransError(f"--set {name}: expected a {kind} value, found {raw!r}") from None
    return out


def _boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(raw)
