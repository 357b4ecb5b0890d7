"""Training checkpoints: a dict of state_dicts + config + step + format version, written atomically.

Only plain types and tensors go in, so `torch.load(..., weights_only=True)` reads it back, and
vidsr.weights.load_generator takes it directly (it prefers "ema", then "generator", and builds
the network from "arch").
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import VidsrError

FORMAT = "vidsr-checkpoint"
FORMAT_VERSION = 1


def plain(value: Any) -> Any:
    """Config values as TOML/JSON-able plain types (Paths -> str, tuples -> lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write beside the target and rename: a crash mid-write never leaves a torn last.pt."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **state}, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a torn or foreign file is the same user error
        raise VidsrError(f"cannot read checkpoint {path}: {type(e).__name__}") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise VidsrError(f"{path} is not a vidsr training checkpoint")
    if obj.get("format_version", 0) > FORMAT_VERSION:
        raise VidsrError(f"{path} was written by a newer vidsr (format {obj['format_version']})")
    return obj
