"""Training checkpoints: a dict of state_dicts + config + step + format version, written atomically.

Only plain types and tensors go in, so `torch.load(..., weights_only=True)` reads it back, and
vidsr.models.weights reads it like any weights file (it prefers "ema", then "generator", and builds
the network from "arch").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..errors import WeightsError
from ..media.staging import save_torch
from ..models.weights import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    LoadedWeights,
    check_state,
    read_weights,
)


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
    save_torch({"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, **state}, path)


def load_checkpoint(path: Path) -> LoadedWeights:
    """A checkpoint to resume from: read and checked like any weights file, and complete."""
    loaded = read_weights(path)
    ckpt = loaded.checkpoint
    if ckpt is None or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path} is not a vidsr training checkpoint")
    version = ckpt.get("format_version", 0)
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise WeightsError(f"{path} was written by a newer vidsr (format {version!r})")
    for key in ("generator", "ema"):
        check_state(ckpt.get(key), f"{path} ({key} weights)")
    if type(ckpt.get("step")) is not int or ckpt["step"] < 0:
        raise WeightsError(f"{path}: its step is {ckpt.get('step')!r}, not a count")
    if ckpt.get("config") is not None and not isinstance(ckpt["config"], dict):
        raise WeightsError(f"{path}: its config is a {type(ckpt['config']).__name__}, not a table")
    return loaded
