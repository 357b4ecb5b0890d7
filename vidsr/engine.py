"""Where a network meets pixels: device, precision, memory layout, and the uint <-> float conversion.

Frames travel as integer NHWC tensors (uint8 for 8-bit video, uint16 holding 16-bit-scaled samples
for deeper video). `Engine.to_input` and `Engine.to_output` are the only places in vidsr that change
pixel range or layout; everything else hands frames through untouched.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cache

import torch
from torch import nn

from .errors import VidsrError
from .models import fold_batchnorm

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@cache
def cpu_has_fast_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX512-BF16 or AMX), so bf16 beats fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def resolve_device(device: str) -> torch.device:
    if device not in DEVICES and not device.startswith("cuda:"):
        raise VidsrError(f"unknown device {device!r}; choose from {', '.join(DEVICES)}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise VidsrError("--device cuda was asked for, but no CUDA device is available")
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device, *, has_parameters: bool = True) -> str:
    if precision not in PRECISIONS:
        raise VidsrError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision != "auto":
        if device.type == "cpu" and precision == "fp16":
            raise VidsrError("--precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
        return precision
    if not has_parameters:
        return "fp32"  # interpolation baselines are cheap; keep them exact
    if device.type == "cuda":
        return "fp16"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


@dataclass(frozen=True)
class ValueRange:
    """What pixel value 0 and full scale mean to a network: (0, 1) or (-1, 1)."""

    low: float = 0.0
    high: float = 1.0


class Engine:
    """A network prepared for inference: BatchNorm folded, eval, on its device, dtype, channels_last."""

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str = "auto",
        precision: str = "auto",
        value_range: tuple[float, float] = (0.0, 1.0),
    ):
        self.device = resolve_device(device)
        has_params = any(True for _ in model.parameters())
        self.precision = resolve_precision(precision, self.device, has_parameters=has_params)
        self.dtype = _DTYPES[self.precision]
        self.range = ValueRange(*value_range)
        self.scale = int(getattr(model, "scale", 4))
        if self.device.type == "cpu":
            torch.set_num_threads(os.cpu_count() or 1)
        model = fold_batchnorm(model)
        self.model = model.to(self.device, dtype=self.dtype, memory_format=torch.channels_last)

    def autocast(self):
        # The weights are already cast to self.dtype; autocast only guards ops that would upcast.
        if self.device.type == "cuda" and self.dtype != torch.float32:
            return torch.autocast("cuda", dtype=self.dtype)
        return nullcontext()

    def to_input(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8/uint16 -> (N, 3, H, W) float in the model's range, channels_last."""
        full = 255.0 if frames.dtype == torch.uint8 else 65535.0
        x = frames.to(self.device, non_blocking=True).permute(0, 3, 1, 2).to(self.dtype)
        span = self.range.high - self.range.low
        return x.mul_(span / full).add_(self.range.low)  # NHWC memory: already channels_last

    def to_output(self, y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(N, 3, H, W) float in the model's range -> (N, H, W, 3) integer frames of `dtype`."""
        full = 255.0 if dtype == torch.uint8 else 65535.0
        span = self.range.high - self.range.low
        y = y.float().sub_(self.range.low).mul_(full / span).clamp_(0, full).round_()
        return y.to(dtype).permute(0, 2, 3, 1).contiguous()

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """Upscale a batch of integer NHWC frames; returns integer NHWC frames on the same device."""
        with self.autocast():
            y = self.model(self.to_input(frames))
        return self.to_output(y, frames.dtype)
