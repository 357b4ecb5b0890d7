"""What runs upscale jobs, behind one protocol: BatchRunner on this machine, RayRunner on a Ray
cluster. `open_runner` picks one for a config; every runner settles a job's outcome the same way
(vidsr.jobs.report.settle): a folder's failed file is reported and the others go on.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

from ..config import UpscaleConfig
from ..media.encode import check_encode
from ..media.images import is_image
from ..media.probe import VideoInfo
from ..upscale.pipeline import Progress, UpscaleResult
from .batch import (
    BatchRunner,
    check_image_options,
    check_video_name,
    output_tag,
    plan_jobs,
)
from .distributed import RayRunner, import_ray, run_on_ray
from .report import Reporter


class Runner(Protocol):
    """Runs the upscale jobs of one config: the CLI, the API and the watcher hold one."""

    config: UpscaleConfig
    reporter: Any  # Reporter or anything with its info/warn/error/summary/totals/track

    def preflight(self) -> None:
        """Fail once, before any file, for what every job would fail on (weights)."""

    def run_one(
        self,
        src: Path,
        dst: Path,
        *,
        info: VideoInfo | None = None,
        overwrite: bool | None = None,
        progress: Progress | None = None,
    ) -> UpscaleResult:
        """One job; raises VidsrError subclasses."""

    def run_many(self, jobs: list[tuple[Path, Path]]) -> list[UpscaleResult]:
        """Every job; a failure is settled (reported and recorded), the others go on."""

    def close(self) -> None:
        """Let go of what the runner holds (a Ray session and its workers)."""


def open_runner(
    config: UpscaleConfig,
    *,
    reporter: Any = None,
    cancel: threading.Event | None = None,
    workers: int | None = None,
) -> Runner:
    """RayRunner where `config.ray` says so (`workers` caps its actors), else BatchRunner."""
    if config.ray is not None:
        return RayRunner(config, reporter=reporter, cancel=cancel, workers=workers)
    return BatchRunner(config, reporter=reporter, cancel=cancel)


def upscale_path(input: Path, output: Path | None, config: UpscaleConfig) -> list[UpscaleResult]:
    """The CLI's entry: a file or a folder, with rich progress and one summary line per file."""
    out = Path(output) if output is not None else None
    if config.ray is not None:
        import_ray()  # without the extra, one line before any folder is made
    if Path(input).is_file():
        check_image_options(Path(input), config)
    jobs = plan_jobs(Path(input), out, config.container, output_tag(config))
    reporter = Reporter(quiet=config.quiet)
    local = BatchRunner(config, reporter=reporter)
    for src, dst in jobs:
        if not is_image(src):  # before the codec check, which would only say ".png: no"
            check_video_name(src, dst)
    for suffix in {dst.suffix for src, dst in jobs if not is_image(src)}:
        # an impossible codec/container fails before any work
        check_encode(local.config_for(suffix).encode, suffix)
    if config.ray is not None:
        return run_on_ray(jobs, config, reporter=reporter)
    return local.run_many(jobs)


__all__ = ["Runner", "open_runner", "upscale_path"]
