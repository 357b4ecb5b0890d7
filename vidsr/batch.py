"""The one batch driver: jobs in, results out, for `vidsr upscale DIR`, the watcher and the API.

A BatchRunner owns what is worth keeping between files: engines (weights read, sha256 checked,
BatchNorm folded), cached by what changes an engine. It checks each job before any model work
(input, output path, codec and container, encoder limits), isolates per-file errors when asked
to, and reports through a Reporter (progress, warnings, one summary line per file, totals).
A distributed worker calls `run_one` per task exactly as the watcher does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from .config import UpscaleConfig
from .engine import Engine
from .errors import Cancelled, InputError, OutputError, VidsrError
from .media.encode import check_encode
from .media.probe import VideoInfo, probe
from .pipeline import Progress, UpscaleResult, precision_for, upscale_file
from .staging import is_temp_name, remove_stale

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mkv .mov .webm .avi .ts .mts .m2ts .mpg .mpeg .flv .wmv .3gp .ogv .y4m .h264 .hevc"
    .split()
)  # fmt: skip
# Containers we write; other inputs (.avi, .ts, ...) get an .mkv, which holds any stream they do.
OUTPUT_EXTENSIONS = frozenset((".mp4", ".m4v", ".mkv", ".mov", ".webm"))


def default_output(src: Path, out_dir: Path | None = None, container: str | None = None) -> Path:
    """`<stem>_x4` beside `src` (or in `out_dir`), as `container` (".mkv") or the source's type."""
    suffix = src.suffix.lower() if src.suffix.lower() in OUTPUT_EXTENSIONS else ".mkv"
    return (out_dir or src.parent) / f"{src.stem}_x4{container or suffix}"


def list_videos(folder: Path) -> list[Path]:
    """The videos directly inside `folder`, skipping our own outputs and temporary files.

    Only regular files: a FIFO or a device with a video's name would block the reader forever.
    """
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in VIDEO_EXTENSIONS
        and p.is_file()
        and not p.name.startswith(".")
        and not p.stem.endswith("_x4")
        and not is_temp_name(p.name)
    )


def plan_jobs(
    input: Path, output: Path | None, container: str | None = None
) -> list[tuple[Path, Path]]:
    """(source, target) pairs for a file or a folder input."""
    if not input.exists():
        raise InputError(f"no such file or folder: {input}")
    if input.is_dir():
        if output is not None and output.exists() and not output.is_dir():
            raise OutputError(f"{output} is a file; a folder input needs an output folder")
        if output is not None:
            try:
                output.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise OutputError(f"cannot create output folder {output}: {e.strerror}") from None
        videos = list_videos(input)
        if not videos:
            raise InputError(f"no videos in {input}")
        return [(v, default_output(v, output, container)) for v in videos]
    if output is not None and output.is_dir():
        return [(input, default_output(input, output, container))]
    return [(input, output or default_output(input, container=container))]


def check_target(src: Path, dst: Path, config: UpscaleConfig) -> None:
    """What can be known about the output before any frame is decoded."""
    if dst.is_symlink() and not dst.exists():
        raise OutputError(f"output {dst} is a dangling symbolic link; remove it or choose another")
    if dst.exists() and dst.resolve() == src.resolve():
        raise OutputError(f"output {dst} is the input itself; choose another name")
    if dst.exists() and not config.overwrite:
        raise OutputError(f"{dst} exists; pass --overwrite to replace it")
    if not dst.parent.is_dir():
        raise OutputError(f"output folder does not exist: {dst.parent}")
    check_encode(config.encode, dst.suffix)


class EngineCache:
    """Engines by what changes one: model, weights, device, tile policy and the precision a
    source needs (a >8-bit source may need fp32 where 8-bit runs bf16). Thread-safe."""

    def __init__(self) -> None:
        self._engines: dict[tuple, Engine] = {}
        self._lock = threading.Lock()

    def get(self, config: UpscaleConfig, info: VideoInfo | None = None) -> Engine:
        precision = precision_for(config, info)
        key = (config.model, str(config.weights), config.device, config.tile, precision)
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                engine = self._engines[key] = _build_engine(config, precision)
            return engine


def _build_engine(config: UpscaleConfig, precision: str) -> Engine:
    from .weights import load_generator

    model, record = load_generator(config.model, config.weights)
    value_range = record.value_range if record is not None else (0.0, 1.0)
    return Engine(
        model, device=config.device, precision=precision, value_range=value_range, tile=config.tile
    )


class BatchRunner:
    """Runs upscale jobs with one config; engines are built once and kept."""

    def __init__(
        self,
        config: UpscaleConfig,
        *,
        reporter=None,
        cancel: threading.Event | None = None,
        engines: EngineCache | None = None,
    ):
        self.config = config
        self.reporter = reporter
        self.cancel = cancel
        self.engines = engines or EngineCache()
        self._swept: set[Path] = set()

    def preflight(self) -> None:
        """Fail once, up front, for what would fail every file: unknown model, missing weights."""
        self.engines.get(self.config)

    def _warn(self, msg: str) -> None:
        if self.reporter is not None:
            self.reporter.warn(msg)

    def _sweep(self, folder: Path) -> None:
        """Remove the temp files that dead writers (kill -9, power loss) left in `folder`."""
        folder = folder.resolve()
        if folder not in self._swept:
            self._swept.add(folder)
            remove_stale(folder, log=self._warn)

    def run_one(
        self,
        src: Path,
        dst: Path,
        *,
        info: VideoInfo | None = None,
        overwrite: bool | None = None,
        progress: Progress | None = None,
        warn: Callable[[str], None] | None = None,
        inform: Callable[[str], None] | None = None,
    ) -> UpscaleResult:
        """One job; raises VidsrError subclasses (the caller decides what a failure means).

        With --skip-existing, an output that exists is left alone: a result with `skipped` set.
        """
        src, dst = Path(src), Path(dst)
        config = self.config if overwrite is None else replace(self.config, overwrite=overwrite)
        if config.skip_existing and dst.is_file():
            return UpscaleResult(src, dst, skipped=True, output_bytes=dst.stat().st_size)
        info = info or probe(src)  # a bad input is reported as such before any model is loaded
        check_target(src, dst, config)
        self._sweep(dst.parent)
        engine = self.engines.get(config, info)
        return upscale_file(
            src,
            dst,
            config,
            engine=engine,
            info=info,
            cancel=self.cancel,
            progress=progress,
            warn=warn or self._warn,
            inform=inform or getattr(self.reporter, "info", None),
        )

    def run_many(self, jobs: list[tuple[Path, Path]]) -> list[UpscaleResult]:
        """Every job, each failure reported and recorded while the others go on."""
        results: list[UpscaleResult] = []
        for src, dst in jobs:
            try:
                with self.reporter.track(src) as progress:
                    result = self.run_one(src, dst, progress=progress)
                self.reporter.summary(result)
            except VidsrError as e:
                if len(jobs) == 1 or isinstance(e, Cancelled):
                    raise
                result = UpscaleResult(src, dst, error=str(e))
                self.reporter.error(f"{src.name}: {e}")
            results.append(result)
        if len(jobs) > 1:
            self.reporter.totals(results)
        return results


def upscale_path(input: Path, output: Path | None, config: UpscaleConfig) -> list[UpscaleResult]:
    """The CLI's entry: a file or a folder, with rich progress and one summary line per file."""
    from .report import Reporter

    jobs = plan_jobs(Path(input), Path(output) if output is not None else None, config.container)
    for suffix in {dst.suffix for _, dst in jobs}:
        check_encode(config.encode, suffix)  # an impossible codec/container fails before any work
    runner = BatchRunner(config, reporter=Reporter(quiet=config.quiet))
    return runner.run_many(jobs)


__all__ = [
    "BatchRunner",
    "EngineCache",
    "OUTPUT_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "check_target",
    "default_output",
    "list_videos",
    "plan_jobs",
    "upscale_path",
]
