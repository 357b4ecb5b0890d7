"""The Python API: `vidsr.upscale_video(src, dst, model="srgan", **options)`."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from .jobs.batch import check_image_options, default_output, output_tag
from .jobs.presets import build_config
from .jobs.runner import open_runner
from .upscale.pipeline import Progress, UpscaleResult


def upscale_video(
    src: str | Path,
    dst: str | Path | None = None,
    model: str | None = None,
    *,
    preset: str | Path | None = None,
    quiet: bool = True,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> UpscaleResult:
    """Upscale `src` 4x into `dst` (default: beside it, with an _x4 suffix).

    `options` are the upscale options by name, exactly those of `vidsr upscale` (see
    vidsr.config.OPTIONS: weights, overwrite, device, precision, batch_size, tile, codec, crf,
    encoder_preset, pix_fmt, container, resume, start, duration, skip_existing, ray). `preset` (a
    name such as "fast", or a .toml file) fills every option left out or None; explicit
    arguments win. Raises vidsr.errors.VidsrError subclasses with a one-line message
    (ConfigError for a bad value); the target path is never left half-written: an interrupted
    call leaves a work folder beside it that the same call resumes from (vidsr.upscale.resume).
    `cancel` (a threading.Event) stops the job early with Cancelled; `progress(done, total)` is
    called as frames are written.
    """
    config = build_config(preset, model=model, quiet=quiet, **options)
    src = Path(src)
    check_image_options(src, config)
    dst = (
        Path(dst)
        if dst is not None
        else default_output(src, None, config.container, output_tag(config))
    )
    # the file here, or (a long one: its segments) on a Ray cluster where config.ray says so
    runner = open_runner(config, cancel=cancel)
    try:
        return runner.run_one(src, dst, progress=progress)
    finally:
        runner.close()


__all__ = ["UpscaleResult", "upscale_video"]
