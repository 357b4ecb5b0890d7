"""Model files from the community (Real-ESRGAN, Compact, SPAN, SwinIR, HAT, DAT, ...) via spandrel.

spandrel recognises an architecture from a state_dict's keys and shapes and builds it with the right
hyper-parameters. vidsr.models.weights reads the file, never running code from it (safetensors, or
torch.load(weights_only=True)); spandrel's own loader would run TorchScript for .pt files, which is
why it only ever sees tensors from us.

`CommunityModel` wraps the network so the rest of vidsr sees what it expects of any generator: RGB
in [0, 1] in, `scale` x out, any frame size (padding to the architecture's size multiple is done
here and cropped away), and which reduced precisions the architecture tolerates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import WeightsError

SR_PURPOSES = ("SR", "Restoration")  # image in, image out; FaceSR and Inpainting need more


@dataclass(frozen=True)
class ModelInfo:
    """What a model file is, as `vidsr models FILE` prints it."""

    architecture: str  # spandrel's name: "ESRGAN", "RealESRGAN Compact", "SPAN", ...
    scale: int
    purpose: str
    parameters: int
    precisions: tuple[str, ...]  # fp32 always; fp16/bf16 where the architecture supports them
    multiple_of: int
    minimum: int
    tags: tuple[str, ...] = ()


def _check_finite(state: dict[str, Any], path: Path) -> None:
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            if not bool(torch.isfinite(value).all()):
                raise WeightsError(f"{path}: tensor {key!r} holds NaN or infinite values; refused")


def detect(state: dict[str, Any], path: Path):
    """spandrel's descriptor for a state_dict (BasicSR `params_ema`/`params` layouts included)."""
    from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError

    try:
        _check_finite(state, path)
        descriptor = ModelLoader().load_from_state_dict(state)
    except UnsupportedModelError:
        raise WeightsError(
            f"{path}: not a vidsr model and not an architecture spandrel knows "
            "(see `vidsr models` for the list)"
        ) from None
    except WeightsError:
        raise
    except Exception as e:  # noqa: BLE001 - a broken file of a known architecture
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(f"{path}: cannot build the model it describes: {first[:160]}") from None
    if not isinstance(descriptor, ImageModelDescriptor) or descriptor.purpose not in SR_PURPOSES:
        raise WeightsError(
            f"{path}: a {descriptor.architecture.name} {descriptor.purpose} model; "
            "vidsr runs image-to-image models (SR and restoration)"
        )
    if (descriptor.input_channels, descriptor.output_channels) != (3, 3):
        raise WeightsError(
            f"{path}: a {descriptor.input_channels}-channel model; vidsr runs RGB models"
        )
    return descriptor


def info_of(descriptor) -> ModelInfo:
    precisions = ("fp32",)
    precisions += ("fp16",) if descriptor.supports_half else ()
    precisions += ("bf16",) if descriptor.supports_bfloat16 else ()
    req = descriptor.size_requirements
    return ModelInfo(
        architecture=descriptor.architecture.name,
        scale=int(descriptor.scale),
        purpose=descriptor.purpose,
        parameters=sum(p.numel() for p in descriptor.model.parameters()),
        precisions=precisions,
        multiple_of=int(req.multiple_of),
        minimum=int(req.minimum),
        tags=tuple(descriptor.tags),
    )


class CommunityModel(nn.Module):
    """A spandrel network as a vidsr generator: any input size in, exactly `scale` x out."""

    def __init__(self, descriptor):
        super().__init__()
        self.net = descriptor.model
        self.info = info_of(descriptor)
        self.scale = self.info.scale
        self.supports_half = descriptor.supports_half
        self.supports_bfloat16 = descriptor.supports_bfloat16
        self.square = bool(descriptor.size_requirements.square)

    def _padding(self, h: int, w: int) -> tuple[int, int]:
        m, low = max(1, self.info.multiple_of), self.info.minimum
        ph = max(math.ceil(h / m) * m, low) - h
        pw = max(math.ceil(w / m) * m, low) - w
        if self.square:
            side = max(h + ph, w + pw)
            ph, pw = side - h, side - w
        return ph, pw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = self._padding(h, w)
        if ph or pw:  # replicate: reflect needs pad < size, and edges must not ring
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        y = self.net(x)  # (N, 3, s(H+ph), s(W+pw))
        return y[..., : h * self.scale, : w * self.scale]


def load_community(path: Path, state: dict[str, Any]) -> CommunityModel:
    """An eval-mode CommunityModel for a model file's tensors (read by vidsr.models.weights)."""
    return CommunityModel(detect(state, Path(path))).eval()


def known_architectures() -> list[str]:
    from spandrel import MAIN_REGISTRY

    return sorted({a.architecture.name for a in MAIN_REGISTRY.architectures()})


__all__ = [
    "CommunityModel",
    "ModelInfo",
    "detect",
    "known_architectures",
    "load_community",
]
