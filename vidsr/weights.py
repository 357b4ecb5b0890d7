"""Typed records of the checkpoints that ship inside the package, and weight loading.

A record names a file in vidsr/weights/, its sha256 (checked at load), the architecture it was
trained with and the pixel range its input and output use. `load_generator` is the one way any
caller gets a ready network: shipped weights, a plain state_dict, or a training checkpoint.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import WeightsError
from .models import MODELS, build_model

WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class WeightsRecord:
    model: str  # registry name
    file: str  # inside vidsr/weights/
    sha256: str
    arch: dict[str, Any] = field(default_factory=dict)
    value_range: tuple[float, float] = (0.0, 1.0)  # what 0 and full scale map to, in and out
    description: str = ""

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.file


# Made with the recipes in vidsr/train/recipes/ and `vidsr export`; how, on what data, for how long
# and what they score: training/RESULTS.md.
SHIPPED: dict[str, WeightsRecord] = {
    record.model: record
    for record in (
        WeightsRecord(
            "srresnet",
            "srresnet.pt",
            "360b02c8715ed459a9d4fa811d7f197c42f779e14351429ba7060ee3505de47d",
            description="recipe srresnet, 11.5k steps on the 2-core CPU (MSE)",
        ),
        WeightsRecord(
            "srgan",
            "srgan.pt",
            "90555e3af73c3124ba7dfa40168c412e4eb488757dc2ad3ab2b1a9eeda089255",
            description="recipe srgan from srresnet, VGG16 conv2_2 content + 1e-3 adversarial"
            " + 5x pixel MSE, 259 steps on the 2-core CPU",
        ),
        WeightsRecord(
            "fast",
            "fast.pt",
            "79bc8474a14aeeba51f3abe2e8455c6f9414a935c7a33f34807b4fa96ee0d754",
            description="recipe fast at lr 5e-4, 17.4k steps on the 2-core CPU (MSE)",
        ),
    )
}


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is the same user error
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(f"cannot read weights from {path}: {first}") from None
    if not isinstance(obj, dict):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state_dict or checkpoint")
    return obj


def split_checkpoint(obj: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(generator state_dict, architecture kwargs) from a plain state_dict or a training checkpoint.

    A training checkpoint (vidsr.train.checkpoint) carries "generator" and usually "ema"; the EMA
    weights are what inference wants. Its "arch" holds the architecture it was trained with.
    """
    if "generator" in obj or "ema" in obj:
        state = obj.get("ema") or obj["generator"]
        arch = dict(obj.get("arch") or {})
        return state, arch
    return obj, {}


def load_generator(
    name: str, weights: str | Path | None = None
) -> tuple[nn.Module, WeightsRecord | None]:
    """An eval-mode network for `name` with weights from `weights`, or the shipped file.

    Raises WeightsError when a trainable model has no weights: random weights are never run.
    """
    if name not in MODELS:
        raise WeightsError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    spec = MODELS[name]
    if not spec.trainable:
        return build_model(name).eval(), None

    record = SHIPPED.get(name)
    if weights is None:
        if record is None:
            raise WeightsError(
                f"no trained weights ship for {name!r} yet: pass --weights FILE "
                f"(a state_dict or a `vidsr train` checkpoint), or train them with "
                f"`vidsr train --recipe {name}`"
            )
        path = record.path
        if not path.is_file():
            raise WeightsError(
                f"shipped weights for {name!r} are missing: {path} (reinstall vidsr)"
            )
        digest = sha256_of(path)
        if digest != record.sha256:
            raise WeightsError(f"shipped weights {path} are damaged (sha256 {digest[:12]}...)")
        state, arch = split_checkpoint(_read_state(path))
        arch = {**record.arch, **arch}
    else:
        path = Path(weights)
        state, arch = split_checkpoint(_read_state(path))
        record = None

    model = build_model(name, **arch)
    state = {k.removeprefix("module."): v for k, v in state.items()}  # DDP-wrapped checkpoints
    try:
        model.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True
        )
    except RuntimeError as e:
        missing = len(set(model.state_dict()) - set(state))
        extra = len(set(state) - set(model.state_dict()))
        raise WeightsError(
            f"{path} does not fit model {name!r} ({missing} missing and {extra} unexpected keys, "
            f"or mismatched shapes): {str(e).splitlines()[0]}"
        ) from None
    return model.eval(), record
