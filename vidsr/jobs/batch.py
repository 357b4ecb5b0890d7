"""The one batch driver: jobs in, results out, for `vidsr upscale DIR`, the watcher and the API.

A BatchRunner owns what is worth keeping between files: engines (weights read, sha256 checked,
BatchNorm folded), cached by what changes an engine. It checks each job before any model work
(input, output path, codec and container, encoder limits), isolates per-file errors when asked
to, and reports through a Reporter (progress, warnings, one summary line per file, totals).
A distributed worker calls `run_one` per task exactly as the watcher does.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..config import UpscaleConfig, prep_options
from ..errors import ConfigError, InputError, OutputError
from ..media.encode import EncodePlan, check_output_path, plan_encode, resolve_codec
from ..media.filters import plan_prep
from ..media.images import (
    IMAGE_EXTENSIONS,
    check_image_suffix,
    gif_frames,
    image_output,
    is_image,
    list_images,
    read_image,
    upscale_picture,
    write_image,
)
from ..media.probe import VideoInfo, probe
from ..media.span import Window
from ..media.staging import is_temp_name, remove_stale
from ..upscale.engine import Engine, output_size
from ..upscale.pipeline import (
    Progress,
    SegmentPlan,
    SegmentResult,
    UpscaleResult,
    encode_segment,
    plan_segments,
    precision_for,
    upscale_file,
)
from .report import settle

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mkv .mov .webm .avi .ts .mts .m2ts .mpg .mpeg .flv .wmv .3gp .ogv .y4m .h264 .hevc"
    .split()
)  # fmt: skip
# Containers we write; other inputs (.avi, .ts, ...) get an .mkv, which holds any stream they do.
OUTPUT_EXTENSIONS = frozenset((".mp4", ".m4v", ".mkv", ".mov", ".webm"))


_OUR_OUTPUT = re.compile(r"_x\d+(\.\d+)?(-\d+)?$")  # clip_x4, clip_x2.5, clip_x4-2: our own outputs


def default_output(
    src: Path, out_dir: Path | None = None, container: str | None = None, tag: str = "x4"
) -> Path:
    """`<stem>_x4` beside `src` (or in `out_dir`), as `container` (".mkv") or the source's type.

    `tag` is the final scale (`output_tag`): a 2x model writes `clip_x2.mp4`. An image becomes
    `<stem>_x4.png` whatever `container` says: that option is for videos.
    """
    if is_image(src):
        return image_output(src, out_dir, tag)
    suffix = src.suffix.lower() if src.suffix.lower() in OUTPUT_EXTENSIONS else ".mkv"
    return (out_dir or src.parent) / f"{src.stem}_{tag}{container or suffix}"


def model_scale(config: UpscaleConfig) -> int:
    """The network's own scale, known before it is built (a file is read, not run)."""
    from ..models.weights import scale_of

    return scale_of(config.model, config.weights)


def output_tag(config: UpscaleConfig) -> str:
    """The factor from source to output for output names: "x4", "x2", "x1.5"."""
    if config.outscale is not None:
        return f"x{config.outscale:g}"
    return f"x{model_scale(config)}"


def list_videos(folder: Path) -> list[Path]:
    """The videos directly inside `folder`, skipping our own outputs and temporary files.

    Only regular files: a FIFO or a device with a video's name would block the reader forever.
    """
    return sorted(
        p
        for p in folder.iterdir()
        if (
            p.suffix.lower() in VIDEO_EXTENSIONS or (p.suffix.lower() == ".gif" and not is_image(p))
        )
        and p.is_file()
        and not p.name.startswith(".")
        and not _OUR_OUTPUT.search(p.stem)
        and not is_temp_name(p.name)
    )


def plan_jobs(
    input: Path, output: Path | None, container: str | None = None, tag: str = "x4"
) -> list[tuple[Path, Path]]:
    """(source, target) pairs for a file or a folder input; `tag` as for default_output."""
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
        media = sorted(list_videos(input) + list_images(input))  # each goes its own way below
        if not media:
            raise InputError(f"no videos or images in {input}")
        return [(v, default_output(v, output, container, tag)) for v in media]
    if output is not None and output.is_dir():
        return [(input, default_output(input, output, container, tag))]
    return [(input, output or default_output(input, container=container, tag=tag))]


def check_video_name(src: Path, dst: Path) -> None:
    """A video (an animated GIF too) given an image's name to write: one line, before any work."""
    if dst.suffix.lower() not in IMAGE_EXTENSIONS:
        return
    gif = src.suffix.lower() == ".gif"
    what = f"an animated GIF ({gif_frames(src)} frames)" if gif else "a video"
    raise OutputError(
        f"{src.name} is {what}: it is upscaled to a video; give -o a .mkv, .mp4, .mov or .webm name"
    )


def check_image_options(src: Path, config: UpscaleConfig) -> None:
    """A single image with an option only a video can take (a folder's videos take them)."""
    if not is_image(src):
        return
    video_only = (("--start", config.start is not None),
                  ("--duration", config.duration is not None),
                  ("--deinterlace", config.deinterlace in ("frame", "field")),
                  ("--ivtc", config.ivtc == "on"), ("--crop", config.crop is not None),
                  ("--denoise", config.denoise != "off"))  # fmt: skip
    given = [flag for flag, used in video_only if used]
    if given:
        verb = "apply" if len(given) > 1 else "applies"
        raise ConfigError(
            given[0], f"{src.name} is an image: {' and '.join(given)} {verb} to videos"
        )


def check_target(src: Path, dst: Path, config: UpscaleConfig, info: VideoInfo) -> EncodePlan | None:
    """What can be known about the output before any frame is decoded or model built: the path
    (not the input, not a dangling link, writable, space left), codec and container, and whether
    the encoder takes frames of the output size. Returns a video's EncodePlan: what the run
    encodes with, checked here once."""
    if dst.exists() and dst.resolve() == src.resolve():
        raise OutputError(f"output {dst} is the input itself; choose another name")
    if is_image(src):
        check_output_path(dst, overwrite=config.overwrite)
        check_image_suffix(dst)
        return None
    check_output_path(dst, overwrite=config.overwrite)
    check_video_name(src, dst)
    size = output_size(info.height, info.width, model_scale(config), config.outscale)
    return plan_encode(config.encode, info, size, dst.suffix)


class EngineCache:
    """Engines by what changes one: model, weights, device, tile policy and the precision a
    source needs (a >8-bit source may need fp32 where 8-bit runs bf16). Thread-safe."""

    def __init__(self) -> None:
        self._engines: dict[tuple, Engine] = {}
        self._lock = threading.Lock()

    def get(self, config: UpscaleConfig, info: VideoInfo | None = None) -> Engine:
        precision = precision_for(config, info)
        key = (config.model, str(config.weights), config.device, config.tile, config.outscale,
               precision, config.memory)  # fmt: skip
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                engine = self._engines[key] = build_engine(config, precision)
            return engine


def build_engine(config: UpscaleConfig, precision: str) -> Engine:
    from ..models.weights import load_network

    model, value_range = load_network(config.model, config.weights)
    return Engine(
        model,
        device=config.device,
        precision=precision,
        value_range=value_range,
        tile=config.tile,
        outscale=config.outscale,
        memory=config.memory,
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
        self._resolved: dict[str, UpscaleConfig] = {}

    def config_for(self, suffix: str) -> UpscaleConfig:
        """The config with `--codec auto` resolved for this container (said once)."""
        if self.config.encode.codec != "auto":
            return self.config
        if suffix not in self._resolved:
            codec, note = resolve_codec("auto", suffix)
            self._warn(note)
            self._resolved[suffix] = replace(
                self.config, encode=replace(self.config.encode, codec=codec)
            )
        return self._resolved[suffix]

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
        config = self._job_config(dst, overwrite)
        if config.skip_existing and dst.is_file():
            return UpscaleResult(src, dst, skipped=True, output_bytes=dst.stat().st_size)
        if is_image(src):
            return self._run_image(src, dst, config, progress, warn or self._warn)
        info = info or probe(src)  # a bad input is reported as such before any model is loaded
        prep, said = plan_prep(info, **prep_options(config))  # deinterlace, crop, ...: what fits
        plan = check_target(src, dst, config, prep.output_info(info))
        self._sweep(dst.parent)
        engine = self.engines.get(config, info)
        for line in said:
            (warn or self._warn)(line)
        return upscale_file(
            src,
            dst,
            config,
            engine=engine,
            info=info,
            prep=prep,
            plan=plan,
            cancel=self.cancel,
            progress=progress,
            warn=warn or self._warn,
            inform=inform or getattr(self.reporter, "info", None),
        )

    def _job_config(self, dst: Path, overwrite: bool | None) -> UpscaleConfig:
        config = self.config_for(dst.suffix)
        return config if overwrite is None else replace(config, overwrite=overwrite)

    def plan(self, src: Path, dst: Path, *, overwrite: bool | None = None) -> SegmentPlan | None:
        """A long video's segments as tasks for a distributed run (vidsr.jobs.distributed),
        after the checks run_one makes; None: run it whole with run_one (an image, an output
        that --skip-existing keeps, a short video)."""
        src, dst = Path(src), Path(dst)
        config = self._job_config(dst, overwrite)
        if is_image(src) or (config.skip_existing and dst.is_file()):
            return None
        info = probe(src)
        plan = check_target(src, dst, config, info)
        self._sweep(dst.parent)
        engine = self.engines.get(config, info)
        return plan_segments(src, dst, config, engine=engine, info=info, plan=plan)

    def run_segment(
        self,
        src: Path,
        dst: Path,
        info: VideoInfo,
        window: Window,
        index: int,
        *,
        overwrite: bool | None = None,
        progress: Progress | None = None,
    ) -> SegmentResult:
        """Segment `index` of a plan (its `window`) into the work folder beside `dst`; the
        caller journals it, and run_one joins the target once every segment is there."""
        config = self._job_config(Path(dst), overwrite)
        engine = self.engines.get(config, info)
        return encode_segment(
            Path(src), Path(dst), config, engine=engine, info=info, window=window, index=index,
            cancel=self.cancel, progress=progress, warn=self._warn,
        )  # fmt: skip

    def _run_image(
        self,
        src: Path,
        dst: Path,
        config: UpscaleConfig,
        progress: Progress | None,
        warn: Callable[[str], None],
    ) -> UpscaleResult:
        """An image: read upright, through the same engine as a frame, written atomically."""
        result = UpscaleResult(src, dst)

        def note(msg: str) -> None:
            result.warnings.append(msg)
            warn(msg)

        t0 = time.perf_counter()
        picture = read_image(src)  # a bad image is reported as such before any model is loaded
        check_target(src, dst, config, picture)
        self._sweep(dst.parent)
        engine = self.engines.get(config, picture)  # reads picture.bit_depth, as a VideoInfo's
        engine.warn = note
        for msg in picture.notes:
            note(msg)
        upscaled = upscale_picture(picture, engine)
        result.output_bytes = write_image(upscaled, dst, overwrite=config.overwrite, warn=note)
        result.frames = 1
        result.seconds = time.perf_counter() - t0
        result.fps = 1 / result.seconds if result.seconds else 0.0
        if progress is not None:
            progress(1, 1)
        return result

    def run_many(self, jobs: list[tuple[Path, Path]]) -> list[UpscaleResult]:
        """Every job in turn, each failure reported and recorded while the others go on."""
        results = [settle(job, len(jobs), self.reporter, lambda job=job: self._tracked(*job))
                   for job in jobs]  # fmt: skip
        if len(jobs) > 1:
            self.reporter.totals(results)
        return results

    def _tracked(self, src: Path, dst: Path) -> UpscaleResult:
        with self.reporter.track(src) as progress:
            return self.run_one(src, dst, progress=progress)

    def close(self) -> None:
        """Nothing to let go of: engines are freed with the runner (vidsr.jobs.runner.Runner)."""

    def __enter__(self) -> BatchRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = [
    "BatchRunner",
    "EngineCache",
    "OUTPUT_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "check_target",
    "default_output",
    "output_tag",
    "list_videos",
    "model_scale",
    "plan_jobs",
]
