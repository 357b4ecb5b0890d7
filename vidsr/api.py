"""The Python API: `vidsr.upscale_video(src, dst, model="srgan", **options)`."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from .config import EncodeConfig
from .pipeline import Progress, UpscaleResult, default_output, upscale_file
from .presets import build_config


def upscale_video(
    src: str | Path,
    dst: str | Path | None = None,
    model: str | None = None,
    *,
    preset: str | Path | None = None,
    quiet: bool = True,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
    weights: str | Path | None = None,
    overwrite: bool = False,
    device: str = "auto",
    precision: str | None = None,
    batch_size: int | str | None = None,
    tile: int | str | None = None,
    codec: str | None = None,
    crf: int | None = None,
    encoder_preset: str | None = None,
    pix_fmt: str | None = None,
    encode: EncodeConfig | None = None,
    **options: Any,
) -> UpscaleResult:
    """Upscale `src` 4x into `dst` (default: beside it, with an _x4 suffix).

    `preset` (a name such as "fast", or a .toml file) fills every option left at None; explicit
    arguments win (model defaults to "srgan" when neither gives one). `encode`, when given,
    replaces all encoder settings. Raises vidsr.errors.VidsrError subclasses with a one-line
    message on failure; the target path is never left half-written. `cancel` (a
    threading.Event) stops the job early with Cancelled.
    """
    config = build_config(
        preset,
        model=model,
        weights=Path(weights) if weights is not None else None,
        overwrite=overwrite,
        device=device,
        precision=precision,
        batch_size=batch_size,
        tile=tile,
        codec=codec,
        crf=crf,
        encoder_preset=encoder_preset,
        pix_fmt=pix_fmt,
        encode=encode,
        quiet=quiet,
    )
    if options:
        config = replace(config, **options)
    src = Path(src)
    dst = Path(dst) if dst is not None else default_output(src, container=config.container)
    return upscale_file(src, dst, config, cancel=cancel, progress=progress)


__all__ = ["UpscaleResult", "upscale_video"]
