"""The Python API: `vidsr.upscale_video(src, dst, model="srgan", **options)`."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from .config import EncodeConfig, UpscaleConfig
from .pipeline import Progress, UpscaleResult, default_output, upscale_file


def upscale_video(
    src: str | Path,
    dst: str | Path | None = None,
    model: str = "srgan",
    *,
    weights: str | Path | None = None,
    overwrite: bool = False,
    device: str = "auto",
    precision: str = "auto",
    batch_size: int = 1,
    encode: EncodeConfig | None = None,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> UpscaleResult:
    """Upscale `src` 4x into `dst` (default: beside it, with an _x4 suffix).

    Raises vidsr.errors.VidsrError subclasses with a one-line message on failure; the target path
    is never left half-written. `cancel` (a threading.Event) stops the job early with Cancelled.
    """
    config = UpscaleConfig(
        model=model,
        weights=Path(weights) if weights is not None else None,
        overwrite=overwrite,
        device=device,
        precision=precision,
        batch_size=batch_size,
        quiet=True,
        encode=encode or EncodeConfig(),
    )
    if options:
        config = replace(config, **options)
    src = Path(src)
    dst = Path(dst) if dst is not None else default_output(src)
    return upscale_file(src, dst, config, cancel=cancel, progress=progress)


__all__ = ["UpscaleResult", "upscale_video"]
