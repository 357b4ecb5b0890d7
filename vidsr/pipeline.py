"""The streaming upscale: decode thread -> model stage -> encode thread, joined by bounded queues.

Memory stays flat however long the video is: at most `queue_frames` frames wait between stages.
The same stages serve CPU and GPU; on a GPU, batches travel through pinned host memory.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import UpscaleConfig
from .engine import Engine, resolve_device
from .errors import Cancelled, InputError, OutputError, VidsrError
from .media.decode import FrameReader, working_format
from .media.encode import TEMP_MARKER, VideoWriter, check_encode
from .media.probe import VideoInfo, probe
from .slots import SlotRing
from .weights import load_generator

VIDEO_EXTENSIONS = {
    ".mp4",
    ".m4v",
    ".mkv",
    ".mov",
    ".webm",
    ".avi",
    ".ts",
    ".mts",
    ".m2ts",
    ".mpg",
    ".mpeg",
    ".flv",
    ".wmv",
    ".3gp",
    ".ogv",
    ".y4m",
    ".h264",
    ".hevc",
}
# Containers we write; other inputs (.avi, .ts, ...) get an .mkv, which holds any stream they do.
OUTPUT_EXTENSIONS = {".mp4", ".m4v", ".mkv", ".mov", ".webm"}
_END = object()  # queue sentinel: the stage before has finished

Progress = Callable[[int, int], None]  # (frames done, frames expected or 0)


@dataclass
class UpscaleResult:
    input: Path
    output: Path
    frames: int = 0
    seconds: float = 0.0
    fps: float = 0.0
    output_bytes: int = 0
    corrupt_frames: int = 0  # frames repeated for undecodable packets, or decoded with errors
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


def default_output(src: Path, out_dir: Path | None = None, container: str | None = None) -> Path:
    """`<stem>_x4` beside `src` (or in `out_dir`), as `container` (".mkv") or the source's type."""
    suffix = src.suffix.lower() if src.suffix.lower() in OUTPUT_EXTENSIONS else ".mkv"
    suffix = container or suffix
    return (out_dir or src.parent) / f"{src.stem}_x4{suffix}"


def precision_for(config: UpscaleConfig, info: VideoInfo | None) -> str:
    """The precision to ask the engine for. bf16 keeps 8 significant bits, which would crush the
    gradients of a >8-bit source, so "auto" avoids it there (fp16 on CUDA keeps 11 bits)."""
    if config.precision == "auto" and info is not None and info.bit_depth > 8:
        return "fp16" if resolve_device(config.device).type == "cuda" else "fp32"
    return config.precision


def build_engine(config: UpscaleConfig, info: VideoInfo | None = None) -> Engine:
    model, record = load_generator(config.model, config.weights)
    value_range = record.value_range if record is not None else (0.0, 1.0)
    precision = precision_for(config, info)
    return Engine(
        model,
        device=config.device,
        precision=precision,
        value_range=value_range,
        tile=config.tile,
    )


def resolve_batch_size(engine: Engine, batch_size: int | str, info: VideoInfo) -> int:
    """--batch-size: a number, or "auto" (what fits the device's free memory at this frame size)."""
    if batch_size == "auto":
        return engine.auto_batch_size(info.height, info.width)
    try:
        n = int(batch_size)
    except (TypeError, ValueError):
        raise VidsrError(f"--batch-size expects auto or a number, got {batch_size!r}") from None
    if n < 1:
        raise VidsrError(f"--batch-size must be at least 1, got {n}")
    return n


class _Stages:
    """Shared state of one run's threads: the first error wins and stops everyone."""

    def __init__(self, cancel: threading.Event | None):
        self.stop = threading.Event()
        self.cancel = cancel
        self.error: BaseException | None = None
        self._lock = threading.Lock()

    def fail(self, e: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = e
        self.stop.set()

    def stopped(self) -> bool:
        if self.cancel is not None and self.cancel.is_set():
            self.stop.set()
        return self.stop.is_set()

    def put(self, q: queue.Queue, item) -> bool:
        while not self.stopped():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def get(self, q: queue.Queue):
        while not self.stopped():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                pass
        return _END


def upscale_file(
    src: Path,
    dst: Path,
    config: UpscaleConfig,
    *,
    engine: Engine | None = None,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
    warn: Callable[[str], None] | None = None,
) -> UpscaleResult:
    """Upscale one video file into `dst`. Raises VidsrError subclasses; Cancelled if `cancel` is
    set.
    """
    src, dst = Path(src), Path(dst)
    info = probe(src)
    if dst.exists() and dst.resolve() == src.resolve():
        raise OutputError(f"output {dst} is the input itself; choose another name")
    check_encode(config.encode, dst.suffix)  # codec, container, crf: before any model work
    engine = engine or build_engine(config, info)
    result = UpscaleResult(src, dst)

    def note(msg: str) -> None:
        result.warnings.append(msg)
        if warn is not None:
            warn(msg)

    stages = _Stages(cancel)
    engine.warn = note
    batch_size = resolve_batch_size(engine, config.batch_size, info)
    # Slots bound the memory between stages: the queues never hold more than the slots there are.
    ring = SlotRing(
        engine,
        batch=batch_size,
        height=info.height,
        width=info.width,
        dtype=torch.uint8 if working_format(info) == "rgb24" else torch.uint16,
        slots=max(2, min(3, config.queue_frames // batch_size)),
    )
    decoded: queue.Queue = queue.Queue()
    upscaled: queue.Queue = queue.Queue()
    t0 = time.perf_counter()
    with VideoWriter(
        info, dst, config.encode, scale=engine.scale, overwrite=config.overwrite, warn=note
    ) as writer:
        reader = FrameReader(info, batch_size=batch_size, stop=stages.stop)
        threads = [
            threading.Thread(
                target=_decode_stage,
                args=(reader, ring, decoded, stages),
                daemon=True,
                name="vidsr-decode",
            ),
            threading.Thread(
                target=_encode_stage,
                args=(writer, ring, upscaled, stages, info, progress),
                daemon=True,
                name="vidsr-encode",
            ),
        ]
        for t in threads:
            t.start()
        try:
            _model_stage(ring, decoded, upscaled, stages)
        except BaseException as e:  # noqa: BLE001 - handed to the shared error slot
            stages.fail(e)
        finally:
            for t in threads:
                while t.is_alive():
                    t.join(timeout=0.1)
        if stages.error is not None:
            raise stages.error
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"cancelled: {src}")
        if writer.stats.frames == 0:
            raise InputError(f"{src}: no frame could be decoded")
    result.seconds = time.perf_counter() - t0
    result.frames = writer.stats.frames
    result.fps = result.frames / result.seconds if result.seconds else 0.0
    result.output_bytes = dst.stat().st_size
    result.corrupt_frames = reader.repeated_frames + reader.corrupt_frames
    if reader.damage_summary():
        note(reader.damage_summary())
    return result


def _decode_stage(reader: FrameReader, ring: SlotRing, out: queue.Queue, stages: _Stages) -> None:
    try:
        with reader:
            for batch in reader:
                slot = stages.get(ring.free_in)  # waits while every slot is in use downstream
                if slot is _END:
                    return
                if batch.frames.shape[1:] != slot.host.shape[1:]:
                    raise InputError(
                        f"{reader.info.path}: frame size changed mid-stream to "
                        f"{batch.frames.shape[2]}x{batch.frames.shape[1]}"
                    )
                if not stages.put(out, ring.fill(slot, batch.frames, batch.pts)):
                    return
        stages.put(out, _END)
    except BaseException as e:  # noqa: BLE001
        stages.fail(e)


def _model_stage(ring: SlotRing, inq: queue.Queue, out: queue.Queue, stages: _Stages) -> None:
    """Queue each filled slot's copies and network run; on CUDA this never waits for the GPU."""
    while True:
        slot = stages.get(inq)
        if slot is _END:
            stages.put(out, _END)
            return
        free = stages.get(ring.free_out)  # waits only when the encoder is behind
        if free is _END:
            return
        done = ring.run(slot, free)
        ring.free_in.put(slot)  # its host buffer is refilled only after its H2D event
        if not stages.put(out, done):
            return


def _encode_stage(
    writer: VideoWriter,
    ring: SlotRing,
    inq: queue.Queue,
    stages: _Stages,
    info: VideoInfo,
    progress: Progress | None,
) -> None:
    try:
        done = 0
        while True:
            slot = stages.get(inq)
            if slot is _END:
                return
            for frame, pts in zip(slot.frames(), slot.pts, strict=True):
                writer.write(frame, pts)  # a contiguous view into the pinned slot
                done += 1
            ring.free_out.put(slot)
            if progress is not None:
                progress(done, info.frames)
    except BaseException as e:  # noqa: BLE001
        stages.fail(e)


def list_videos(folder: Path) -> list[Path]:
    """The videos directly inside `folder`, skipping our own outputs and temporary files."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and p.suffix.lower() in VIDEO_EXTENSIONS
        and not p.name.startswith(".")
        and not p.stem.endswith("_x4")
        and TEMP_MARKER not in p.name
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


def upscale_path(input: Path, output: Path | None, config: UpscaleConfig) -> list[UpscaleResult]:
    """The CLI's entry: a file or a folder, with rich progress and one summary line per file."""
    from .report import Reporter

    jobs = plan_jobs(Path(input), Path(output) if output is not None else None, config.container)
    for suffix in {dst.suffix for _, dst in jobs}:
        check_encode(config.encode, suffix)  # an impossible codec/container fails before any work
    reporter = Reporter(quiet=config.quiet)
    engines: dict[str, Engine] = {}  # by precision: >8-bit sources may need their own
    results: list[UpscaleResult] = []
    for src, dst in jobs:
        try:
            info = probe(src)  # a bad input is reported as such before any model is loaded
            precision = precision_for(config, info)
            if precision not in engines:
                engines[precision] = build_engine(config, info)
            engine = engines[precision]
            with reporter.track(src) as progress:
                result = upscale_file(
                    src, dst, config, engine=engine, progress=progress, warn=reporter.warn
                )
            reporter.summary(result)
        except VidsrError as e:
            if len(jobs) == 1 or isinstance(e, Cancelled):
                raise
            result = UpscaleResult(src, dst, error=str(e))
            reporter.error(f"{src.name}: {e}")
        results.append(result)
    if len(jobs) > 1:
        reporter.totals(results)
    return results
