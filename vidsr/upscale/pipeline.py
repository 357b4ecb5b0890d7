"""The streaming upscale: decode thread -> model stage -> encode thread, joined by bounded queues.

Memory stays flat however long the video is: at most `queue_frames` frames wait between stages.
The same stages serve CPU and GPU; on a GPU, batches travel through pinned host memory.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..config import UpscaleConfig, prep_options, temporal_name
from ..errors import Cancelled, InputError
from ..media.decode import FrameReader, working_format
from ..media.encode import EncodePlan, VideoWriter, plan_encode
from ..media.filters import Prep, plan_prep
from ..media.probe import VideoInfo, probe
from ..media.segments import Segment, SegmentEncoder, SegmentMuxer
from ..media.span import (
    SpanReader,
    Window,
    expected_frames,
    frame_pts,
    segment_windows,
    span_window,
)
from ..models.records import COMMUNITY
from .engine import Engine, resolve_device
from .profile import StageClock, untimed
from .resume import WorkFolder, job_identity, work_path
from .slots import SlotRing

if TYPE_CHECKING:
    from .temporal import Stabiliser

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
    resumed_frames: int = 0  # frames an earlier, interrupted run of this job had finished
    skipped: bool = False  # --skip-existing: the output was there already
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


def precision_for(config: UpscaleConfig, info: VideoInfo | None) -> str:
    """The precision to ask the engine for. bf16 keeps 8 significant bits, which would crush the
    gradients of a >8-bit source, so "auto" avoids it there (fp16 on CUDA keeps 11 bits)."""
    if config.precision == "auto" and info is not None and info.bit_depth > 8:
        return "fp16" if resolve_device(config.device).type == "cuda" else "fp32"
    return config.precision


def resolve_batch_size(engine: Engine, batch_size: int | str, info: VideoInfo) -> int:
    """--batch-size: a number, or "auto" (what fits the device's free memory at this frame size)."""
    if batch_size == "auto":
        return engine.auto_batch_size(info.height, info.width)
    return int(batch_size)


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

    def join(self, threads: list[threading.Thread]) -> None:
        """Wait for the stage threads. A Ctrl-C or SIGTERM that lands while waiting is kept as the
        error (and stops them): the writer must not be torn down under a thread still writing."""
        for t in threads:
            while t.is_alive():
                try:
                    t.join(timeout=0.1)
                except BaseException as e:  # noqa: BLE001 - KeyboardInterrupt, Terminated
                    self.fail(e)

    def get(self, q: queue.Queue):
        while not self.stopped():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                pass
        return _END


@dataclass
class FileRun:
    """One file's run: what every step of it needs."""

    src: Path
    dst: Path
    config: UpscaleConfig
    engine: Engine
    info: VideoInfo  # the source
    prep: Prep  # its clean-up before the network (deinterlace, crop, ...), decided once
    out: VideoInfo  # the frames the clean-up gives (size, rate, time base): the output's
    plan: EncodePlan  # how the output is encoded, checked once
    batch_size: int
    cancel: threading.Event | None
    note: Callable[[str], None]  # a warning for the user and the result
    clock: Callable = untimed  # a StageClock when the run is profiled (vidsr bench --profile)

    def reader(self, window: Window | None = None, seek_to: int | None = None):
        """The frames of `window` (the output's time base; None: all), read from a seek to
        `seek_to` where the clean-up allows one."""
        if window is None:
            return FrameReader(self.info, batch_size=self.batch_size, prep=self.prep)
        return SpanReader(self.info, window, batch_size=self.batch_size, seek_to=seek_to,
                          prep=self.prep)  # fmt: skip


def upscale_file(
    src: Path,
    dst: Path,
    config: UpscaleConfig,
    *,
    engine: Engine,
    info: VideoInfo | None = None,
    prep: Prep | None = None,
    plan: EncodePlan | None = None,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
    warn: Callable[[str], None] | None = None,
    inform: Callable[[str], None] | None = None,
    clock: StageClock | None = None,
) -> UpscaleResult:
    """Upscale one video file into `dst` with a ready engine (vidsr.jobs.batch builds and caches
    them) and the output's EncodePlan (planned here when not given).

    Raises VidsrError subclasses; Cancelled if `cancel` is set. The output is written beside
    `dst` and renamed into place only when complete. With `config.segment_seconds` (the default)
    it is encoded in segments in a work folder first, and a rerun after any interruption goes on
    from the last finished segment (vidsr.upscale.resume). `inform` gets the one-line description
    of the run (model, device, precision, batch, scale, encoder) and the resume notices.
    `clock` times the stages' sections (vidsr.upscale.profile).
    """
    src, dst = Path(src), Path(dst)
    info = info or probe(src)
    result = UpscaleResult(src, dst)
    engine.warn = note = _noter(result.warnings, warn)
    if prep is None:
        prep, said = plan_prep(info, **prep_options(config))
        for line in said:
            note(line)
    out = prep.output_info(info)
    size = engine.output_size(out.height, out.width)
    plan = plan or plan_encode(config.encode, out, size, dst.suffix)
    batch_size = resolve_batch_size(engine, config.batch_size, out)
    if inform is not None:
        inform(describe_run(src, dst, config, engine, out, batch_size, plan, prep))
    run = FileRun(src, dst, config, engine, info, prep, out, plan, batch_size, cancel, note,
                  clock or untimed)  # fmt: skip
    t0 = time.perf_counter()
    if config.segment_seconds:
        reader, written = _segmented(run, result, progress, inform)
    else:
        reader, written = _one_pass(run, result, progress)
    result.seconds = time.perf_counter() - t0
    result.fps = written / result.seconds if result.seconds else 0.0
    result.output_bytes = dst.stat().st_size
    if reader is not None:
        result.corrupt_frames = reader.repeated_frames + reader.corrupt_frames
        if reader.damage_summary():
            note(reader.damage_summary())
    return result


def _noter(kept: list[str], warn: Callable[[str], None] | None) -> Callable[[str], None]:
    """A warning, kept with the result and passed on to `warn`."""

    def note(msg: str) -> None:
        kept.append(msg)
        if warn is not None:
            warn(msg)

    return note


def describe_run(
    src: Path,
    dst: Path,
    config: UpscaleConfig,
    engine: Engine,
    info: VideoInfo,
    batch: int,
    plan: EncodePlan,
    prep: Prep | None = None,
) -> str:
    """What was chosen for this file, in one line (also in logs: what produced this output).
    `info`: the frames the network sees (after the clean-up `prep` did, which is said too)."""
    height, width = plan.size
    options = plan.option_dict()
    shown = [f"{k} {options[k]}" for k in ("crf", "preset", "cpu-used", "profile") if k in options]
    shown.append(plan.pix_fmt)
    scale = engine.outscale or engine.scale
    tiles = engine.memory_note(info.height, info.width, batch)
    return (
        f"{src.name} -> {dst.name}: model {model_label(config, engine)}, device {engine.device}, "
        f"precision {engine.precision}, batch {batch}{', ' + tiles if tiles else ''}, "
        f"scale {scale:g}x ({width}x{height}), "
        + (f"temporal {temporal_name(config.temporal)}, " if steadied(config) else "")
        + f"encoder {plan.codec} ({', '.join(shown)})"
        + (f"; {prep.said}" if prep is not None and prep.said else "")
    )


def model_label(config: UpscaleConfig, engine: Engine) -> str:
    """The model as the first line names it: a registry name, with the weights file when one
    is given, or a model file with its architecture (`realesr-animevideov3.pth (RealESRGAN
    Compact x4)`)."""
    info = getattr(engine.model, "info", None)  # vidsr.models.community.CommunityModel
    if config.model in COMMUNITY:
        return f"{config.model} ({info.architecture} x{engine.scale})"
    if config.model != "auto":
        return f"{config.model} ({config.weights.name})" if config.weights else config.model
    architecture = info.architecture if info is not None else engine.model.registry_name
    return f"{config.weights.name} ({architecture} x{engine.scale})"


def _one_pass(
    run: FileRun, result: UpscaleResult, progress: Progress | None
) -> tuple[FrameReader, int]:
    """The output in one VideoWriter: no work folder, nothing to resume."""
    reader = run.reader()
    with VideoWriter(run.out, run.dst, run.plan, overwrite=run.config.overwrite,
                     warn=run.note) as writer:  # fmt: skip
        run_stages(run, reader, writer, progress, expected_frames(run.out, None))
        if writer.stats.frames == 0:
            raise InputError(f"{run.src}: no frame could be decoded")
    result.frames = writer.stats.frames
    return reader, writer.stats.frames


def _segmented(
    run: FileRun,
    result: UpscaleResult,
    progress: Progress | None,
    inform: Callable[[str], None] | None,
):
    """Segments in the work folder, from the first frame no segment holds yet (an earlier run of
    this job may have left some), then the target joined from them; the work folder goes once
    the target is in place."""
    config, info = run.config, run.out
    window = span_window(run.info, config.start, config.duration, run.prep)
    per_segment = segment_frames(info, config.segment_seconds, run.prep)
    identity = job_identity(run.src, config, info, run.engine, per_segment, run.plan, run.prep)
    reader, written = None, 0
    with WorkFolder.open(run.dst, identity, resume=config.resume, note=run.note) as work:
        result.resumed_frames = done = work.frames_done
        if work.segments and inform is not None:
            inform(
                f"{run.dst.name}: resuming after frame {done} "
                f"({len(work.segments)} segment(s) kept in {work.path.name})"
            )
        if not work.complete:
            total = expected_frames(info, window)
            reader, rest = _reader_after(run, window, work.last_pts)
            if progress is not None:
                progress(done, total)  # the frames kept from an earlier run show at once
            with SegmentEncoder(
                info, work.path, run.plan, frames_per_segment=per_segment,
                next_index=work.next_index, on_segment=work.add,
                offset=rest.offset if rest is not None else 0, warn=run.note,
            ) as writer:  # fmt: skip
                run_stages(run, reader, writer, _after(progress, done), max(0, total - done),
                           seams=per_segment)  # fmt: skip
            written = writer.stats.frames
            work.mark_complete()
        if work.frames_done == 0:
            work.remove()
            where = " in the --start/--duration span" if window is not None else " could be decoded"
            raise InputError(f"{run.src}: no frame{where}")
        with run.clock("join"), SegmentMuxer(info, run.dst, run.plan, work.files(),
                overwrite=config.overwrite, window=window, warn=run.note) as muxer:  # fmt: skip
            muxer.copy()
        result.frames = work.frames_done
        work.remove()
    return reader, written


def _reader_after(run: FileRun, window: Window | None, last_pts: int | None):
    """The reader of the frames after `last_pts` (None: from the start) within `window` (the
    span; None: the whole video), and the part of it that it reads."""
    if last_pts is not None:
        window = (window or Window(run.out.time_base)).after(last_pts)
        return run.reader(window, seek_to=last_pts), window
    return run.reader(window), window


def _after(progress: Progress | None, done: int) -> Progress | None:
    """`progress` counting on from `done` frames an earlier run had written."""
    if progress is None:
        return None
    return lambda n, t: progress(done + n, done + t if t else 0)


# -- a segmented job as independent tasks (vidsr.jobs.distributed) -------------------------------


@dataclass(frozen=True)
class SegmentPlan:
    """A segmented job cut into tasks that run anywhere, in any order: segment k holds the
    frames of windows[k - 1]. The cuts are where a sequential run cuts (every `per_segment`
    frames), so the segments, and the target joined from them, are the ones it writes."""

    info: VideoInfo
    identity: dict[str, str]  # of the work folder (vidsr.upscale.resume.job_identity)
    per_segment: int
    windows: tuple[Window, ...]
    frames: int  # in all windows
    description: str  # describe_run's line


@dataclass
class SegmentResult:
    segment: Segment | None  # None: no frame came out in its window
    repeated_frames: int = 0  # for undecodable packets
    corrupt_frames: int = 0  # decoded with errors
    warnings: list[str] = field(default_factory=list)


def plan_segments(
    src: Path,
    dst: Path,
    config: UpscaleConfig,
    *,
    engine: Engine,
    info: VideoInfo,
    plan: EncodePlan | None = None,
) -> SegmentPlan | None:
    """The segments of this job as tasks; None where it is one task: one-pass output, a source
    without timestamps (it cannot be read from a point), or a single segment's worth."""
    if not config.segment_seconds:
        return None
    prep, _ = plan_prep(info, **prep_options(config))
    if prep.active:  # the clean-up retimes or reads with context: the file is one task
        return None
    span = span_window(info, config.start, config.duration)
    per_segment = segment_frames(info, config.segment_seconds)
    pts = frame_pts(info, span)
    if pts is None or len(pts) <= per_segment:
        return None
    size = engine.output_size(info.height, info.width)
    plan = plan or plan_encode(config.encode, info, size, Path(dst).suffix)
    batch = resolve_batch_size(engine, config.batch_size, info)
    return SegmentPlan(
        info=info,
        identity=job_identity(Path(src), config, info, engine, per_segment, plan, prep),
        per_segment=per_segment,
        windows=tuple(segment_windows(span, pts, per_segment, info.time_base)),
        frames=len(pts),
        description=describe_run(Path(src), Path(dst), config, engine, info, batch, plan),
    )


def encode_segment(
    src: Path,
    dst: Path,
    config: UpscaleConfig,
    *,
    engine: Engine,
    info: VideoInfo,
    window: Window,
    index: int,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
    warn: Callable[[str], None] | None = None,
) -> SegmentResult:
    """Segment `index` of a planned job, alone, into the target's work folder (which the caller
    opened and whose journal it keeps): the frames of `window`, read from a seek near it."""
    result = SegmentResult(None)
    engine.warn = note = _noter(result.warnings, warn)
    batch_size = resolve_batch_size(engine, config.batch_size, info)
    size = engine.output_size(info.height, info.width)
    # the job's start task checked the encoder at this size already
    plan = plan_encode(config.encode, info, size, Path(dst).suffix, check_size=False)
    run = FileRun(Path(src), Path(dst), config, engine, info, Prep(), info, plan, batch_size,
                  cancel, note)  # fmt: skip
    reader = run.reader(window)
    done: list[Segment] = []
    # one segment, however many frames the window holds: the next index is another task's
    with SegmentEncoder(info, work_path(run.dst), plan, frames_per_segment=sys.maxsize,
                        next_index=index, on_segment=done.append, offset=window.offset,
                        warn=note) as writer:  # fmt: skip
        run_stages(run, reader, writer, progress)
    result.segment = done[0] if done else None
    result.repeated_frames, result.corrupt_frames = reader.repeated_frames, reader.corrupt_frames
    return result


def segment_frames(info: VideoInfo, seconds: float, prep: Prep | None = None) -> int:
    """Frames per segment: about `seconds` of video, as a keyframe interval is. A seam never
    splits the two fields of one source frame (one frame per field: an even count) nor a
    telecine cycle (inverse telecine: a multiple of its 4 film frames)."""
    frames = max(1, round(seconds * float(info.average_rate or 25)))
    unit = 4 if prep is not None and prep.ivtc else 2 if prep and prep.deinterlace == "field" else 1
    return -(-frames // unit) * unit


def run_stages(
    run: FileRun,
    reader: FrameReader,
    writer: VideoWriter,
    progress: Progress | None = None,
    total: int = 0,
    seams: int = 0,
) -> None:
    """The stage graph of every run: frames from `reader` on a decode thread, through the model
    on this thread, to `writer` on an encode thread, joined by queues of pinned slots (which
    bound the memory between stages); the first error in any stage stops them all.

    `progress(done, total)` follows the frames written; `total` is an estimate (0: unknown),
    and once reading ends the true count is reported as the total too. With --temporal the
    encode thread stabilises the frames first, starting afresh every `seams` frames (the
    segment length: a resumed run, which starts at a seam, then writes what an unbroken one
    did)."""
    engine, info, cancel = run.engine, run.out, run.cancel
    stabiliser = _stabiliser(run, seams)
    # On a GPU the encode thread stabilises while the device computes; on a CPU the model
    # thread does, between batches: beside the network's threads it would only slow them.
    on_cpu = engine.device.type != "cuda"
    stages = _Stages(cancel)
    reader.stop = stages.stop
    clock = writer.clock = run.clock
    batch_size = reader.batch_size
    # Slots bound the memory between stages: the queues never hold more than the slots there are.
    ring = SlotRing(
        engine,
        batch=batch_size,
        height=info.height,
        width=info.width,
        dtype=torch.uint8 if working_format(info) == "rgb24" else torch.uint16,
        slots=max(2, min(3, run.config.queue_frames // batch_size)),
    )
    decoded: queue.Queue = queue.Queue()
    upscaled: queue.Queue = queue.Queue()
    threads = [
        threading.Thread(
            target=_decode_stage, args=(reader, ring, decoded, stages, clock), daemon=True,
            name="vidsr-decode",
        ),
        threading.Thread(
            target=_encode_stage, args=(writer, ring, upscaled, stages, total, progress,
                                        None if on_cpu else stabiliser, clock),
            daemon=True, name="vidsr-encode",
        ),
    ]  # fmt: skip
    for t in threads:
        t.start()
    try:
        _model_stage(ring, decoded, upscaled, stages, stabiliser, on_cpu, clock)
    except BaseException as e:  # noqa: BLE001 - handed to the shared error slot
        stages.fail(e)
    finally:
        stages.join(threads)
    if stages.error is not None:
        raise stages.error
    if cancel is not None and cancel.is_set():
        raise Cancelled(f"cancelled: {info.path}")


def steadied(config: UpscaleConfig) -> bool:
    """Whether --temporal has work to do: bicubic adds no detail that could flicker."""
    return bool(config.temporal) and config.model != "bicubic"


def _stabiliser(run: FileRun, seams: int) -> Stabiliser | None:
    """--temporal's stabiliser, or None when it is off. OpenCV is a dependency; where an odd
    install lacks it (a machine with only the wheels it was given), the run goes on without."""
    if not steadied(run.config):
        return None
    try:
        from .temporal import Stabiliser
    except ImportError:
        run.note("--temporal needs OpenCV (pip install opencv-python-headless): upscaled without")
        return None
    return Stabiliser(run.config.temporal, reset_every=seams)


def _decode_stage(
    reader: FrameReader, ring: SlotRing, out: queue.Queue, stages: _Stages, clock=untimed
) -> None:
    try:
        with reader:
            batches = iter(reader)
            while True:
                with clock("decode (and clean-up)"):
                    batch = next(batches, None)
                if batch is None:
                    break
                with clock("decode: wait for a free slot"):
                    slot = stages.get(ring.free_in)  # while every slot is in use downstream
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


def _model_stage(
    ring: SlotRing,
    inq: queue.Queue,
    out: queue.Queue,
    stages: _Stages,
    stabiliser: Stabiliser | None = None,
    on_cpu: bool = True,
    clock=untimed,
) -> None:
    """Queue each filled slot's copies and network run; on CUDA this never waits for the GPU.
    With a stabiliser, on a CPU it runs here on the finished frames; on CUDA the output slot
    takes a copy of the input frames to the encode thread, which runs it."""
    while True:
        with clock("model: wait for decoded frames"):
            slot = stages.get(inq)
        if slot is _END:
            stages.put(out, _END)
            return
        with clock("model: wait for the encoder"):
            free = stages.get(ring.free_out)  # waits only when the encoder is behind
        if free is _END:
            return
        if stabiliser is not None and not on_cpu:  # host frames stay until the slot goes back
            free.lr = slot.host.numpy()[: slot.n].copy()
        with clock("model"):
            done = ring.run(slot, free)
        if stabiliser is not None and on_cpu:  # the run is done: the frames are there
            with clock("temporal stabiliser"):
                stabiliser(slot.host.numpy()[: slot.n], done.frames())
        ring.free_in.put(slot)  # its host buffer is refilled only after its H2D event
        if not stages.put(out, done):
            return


def _encode_stage(
    writer: VideoWriter,
    ring: SlotRing,
    inq: queue.Queue,
    stages: _Stages,
    total: int,
    progress: Progress | None,
    stabiliser: Stabiliser | None = None,
    clock=untimed,
) -> None:
    try:
        done = 0
        while True:
            with clock("encode: wait for upscaled frames"):
                slot = stages.get(inq)
            if slot is _END:
                if progress is not None and not stages.stopped():
                    progress(done, done)  # the estimate corrected: the bar ends full
                return
            with clock("encode: wait for the device's copy"):  # CUDA; on a CPU it is there
                frames = slot.frames()
            if stabiliser is not None:
                with clock("temporal stabiliser"):
                    stabiliser(slot.lr, frames)  # in place, in the slot's host buffer
            for frame, pts in zip(frames, slot.pts, strict=True):
                writer.write(frame, pts)  # a contiguous view into the pinned slot
                done += 1
            ring.free_out.put(slot)
            if progress is not None:
                progress(done, max(total, done) if total else 0)
    except BaseException as e:  # noqa: BLE001
        stages.fail(e)
