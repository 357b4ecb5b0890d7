"""Frozen configurations: what the CLI (or a preset, or a caller) decided, handed to the core."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class EncodeConfig:
    """How the upscaled video is encoded. The container follows the output file's extension."""

    codec: str = "libx264"
    crf: int | None = 18
    preset: str | None = "veryfast"  # the encoder's speed preset
    pix_fmt: str | None = None  # None: follow the source (4:2:0 8-bit for 8-bit sources)
    options: dict[str, str] = field(default_factory=dict)  # extra encoder options


@dataclass(frozen=True)
class UpscaleConfig:
    model: str = "srgan"
    weights: Path | None = None
    overwrite: bool = False
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 1
    quiet: bool = False
    encode: EncodeConfig = field(default_factory=EncodeConfig)
    queue_frames: int = 8  # frames buffered between stages: bounds memory on long videos
