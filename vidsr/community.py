"""Model files from the community (Real-ESRGAN, Compact, SPAN, SwinIR, HAT, DAT, ...) via spandrel.

spandrel recognises an architecture from a state_dict's keys and shapes and builds it with the
right hyper-parameters. We read the file ourselves, never running code from it: .safetensors
through safetensors, anything else through torch.load(weights_only=True), so a pickle that asks
for a global other than tensors and dicts is refused in one line. spandrel's own loader would
run TorchScript for .pt files, which is why it only ever sees a state_dict from us.

`CommunityModel` wraps the network so the rest of vidsr sees what it expects of any generator:
RGB in [0, 1] in, `scale` x out, any frame size (padding to the architecture's size multiple is
done here and cropped away), and which reduced precisions the architecture tolerates.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .errors import WeightsError

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


def read_state_dict(path: Path) -> dict[str, Any]:
    """The file's top-level dict, read without running code from it."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path), device="cpu"))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "a forbidden global"
        raise WeightsError(
            f"{path} is not a plain weights file: it asks to run code when loaded ({first[:120]});"
            " refused"
        ) from None
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(f"cannot read weights from {path}: {first[:160]}") from None
    if not isinstance(obj, dict):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state_dict")
    return obj


def _check_finite(state: dict[str, Any], path: Path) -> None:
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            if not bool(torch.isfinite(value).all()):
                raise WeightsError(f"{path}: tensor {key!r} holds NaN or infinite values; refused")


def detect(state: dict[str, Any], path: Path):
    """spandrel's descriptor for a state_dict (BasicSR `params_ema`/`params` layouts included)."""
    from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError
    from spandrel.__helpers.canonicalize import canonicalize_state_dict

    try:
        canonical = canonicalize_state_dict(state)
        _check_finite(canonical, path)
        descriptor = ModelLoader().load_from_state_dict(canonical)
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


def load_community(path: Path, state: dict[str, Any] | None = None) -> CommunityModel:
    """An eval-mode CommunityModel for a model file (or its already-read top-level dict)."""
    path = Path(path)
    state = read_state_dict(path) if state is None else state
    return CommunityModel(detect(state, path)).eval()


def describe(path: Path) -> ModelInfo:
    return load_community(path).info


def known_architectures() -> list[str]:
    from spandrel import MAIN_REGISTRY

    return sorted({a.architecture.name for a in MAIN_REGISTRY.architectures()})


__all__ = [
    "CommunityModel",
    "ModelInfo",
    "describe",
    "detect",
    "known_architectures",
    "load_community",
    "read_state_dict",
]


def vidsr_model_of(state: dict[str, Any]) -> str | None:
    """The registry name a file's weights are for, when it is one of vidsr's own files."""
    from .models import MODELS, build_model

    if isinstance(state.get("model"), str) and state["model"] in MODELS:
        return state["model"]  # a `vidsr train` checkpoint names its model
    if "generator" in state or "ema" in state:
        return None
    shapes = {k.removeprefix("module."): tuple(v.shape) for k, v in state.items()
              if isinstance(v, torch.Tensor)}  # fmt: skip
    for name, spec in MODELS.items():
        if not spec.trainable:
            continue
        want = {k: tuple(v.shape) for k, v in build_model(name).state_dict().items()}
        if want == shapes:
            return name
    return None


def load_any(model: str, weights: Path | None) -> tuple[nn.Module, tuple[float, float]]:
    """The network for `--model NAME [--weights FILE]`, or for `--model auto` with a file of
    any kind: vidsr's own (shipped, exported, a training checkpoint) or a community file."""
    from .weights import load_generator

    if model != "auto":
        net, record = load_generator(model, weights)
        return net, record.value_range if record is not None else (0.0, 1.0)
    if weights is None:
        raise WeightsError("--model auto needs --weights FILE (or --model FILE)")
    state = read_state_dict(weights)
    name = vidsr_model_of(state)
    if name is not None:
        net, _ = load_generator(name, weights)
        return net, (0.0, 1.0)
    return load_community(weights, state), (0.0, 1.0)
