"""A long output written as segments, then joined: what makes a killed run resumable.

`SegmentEncoder` encodes the upscaled frames into video-only files of a fixed number of frames,
each with a fresh encoder: every segment starts on a keyframe and no frame refers across a seam
(a closed GOP), and a segment's bytes depend only on its own frames, so one redone after a crash
is the one an unbroken run writes. Segments use the target's container, whose timestamps are
exactly as precise as the target's. Each is written under a temp name, renamed, fsynced and only
then reported (`on_segment`): the caller's journal never lists a segment that is not on disk.

`SegmentMuxer` writes the target: the segments' packets copied in order, pts as encoded (the
source's), with the source's audio, subtitles and attachments as VideoWriter copies them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import OutputError
from .encode import EncodePlan, VideoWriter, open_output, write_error
from .probe import VideoInfo
from .span import Window, seek_sides, side_packets
from .staging import WriterLock, temp_path_for


@dataclass(frozen=True)
class Segment:
    index: int  # from 1
    name: str  # file name in the work folder
    frames: int
    first_pts: int  # source pts of its first and last frame
    last_pts: int
    bytes: int


def segment_name(index: int, suffix: str) -> str:
    return f"seg-{index:06d}{suffix}"


def fsync_path(path: Path) -> None:
    """Flush a file (or a folder's entries) to the disk: a journal row must not outlive it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def count_frames(path: Path) -> int | None:
    """Frames that decode from a segment file; None if it does not open or decode."""
    try:
        with av.open(str(path)) as c:
            return sum(1 for _ in c.decode(c.streams.video[0]))
    except (av.error.FFmpegError, OSError, IndexError):
        return None


@dataclass
class _Full:
    """A segment with all its frames sent to its encoder, handed over to be finished."""

    out: av.container.OutputContainer
    video: av.video.stream.VideoStream
    tmp: Path
    dst: Path
    lock: WriterLock
    index: int
    frames: int
    first_pts: int
    last_pts: int


class SegmentEncoder(VideoWriter):
    """`with SegmentEncoder(...) as w: w.write(rgb, pts)`: VideoWriter's encoder, cut every
    `frames_per_segment` frames into `folder/seg-NNNNNN<suffix>`.

    A full segment is finished (its encoder drained, the file closed, renamed, fsynced and
    reported) on a thread of its own while the next one fills: an encoder's drain and the next
    one's ramp-up overlap instead of adding up at every seam, which counts where many encoder
    threads run (one 4K x264 on 16 cores). One segment is finished at a time, in order.
    """

    def __init__(
        self,
        info: VideoInfo,
        folder: Path,
        plan: EncodePlan,
        *,
        frames_per_segment: int,
        next_index: int,
        on_segment: Callable[[Segment], None],
        offset: int = 0,
        warn=None,
    ):
        self.folder = Path(folder)
        self.suffix = plan.suffix  # segments use the target's container
        self.index = next_index
        super().__init__(
            replace(info, other_streams=()),
            self.folder / segment_name(next_index, self.suffix),
            plan,
            overwrite=True,
            warn=warn,
        )
        self.frames_per_segment = frames_per_segment
        self.on_segment = on_segment
        self.offset = offset  # taken off every pts: a --start span begins where the source does
        self._count = 0
        self._first_pts = self._last_pts = 0
        self._finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vidsr-segment")
        self._finishing: Future | None = None

    def __enter__(self) -> SegmentEncoder:
        return self  # a segment is opened by its first frame

    def write(self, rgb: np.ndarray, pts: int) -> None:
        if self._out is None:
            self._open_segment()
        super().write(rgb, pts - self.offset)
        if self._count == 0:
            self._first_pts = pts
        self._last_pts = pts
        self._count += 1
        if self._count == self.frames_per_segment:
            self._hand_over()

    def _open_segment(self) -> None:
        if self._finishing is not None and self._finishing.done():
            self._wait()  # a failed finish stops the run now, not a segment later
        self.dst = self.folder / segment_name(self.index, self.suffix)
        self.tmp = temp_path_for(self.dst)
        try:
            with self.clock("segment open"):
                self._lock = WriterLock(self.tmp)
                self._out = open_output(self.tmp)
                self._open_video()  # the same stream set-up as an unsegmented output
                self._out.start_encoding()
        except (av.error.FFmpegError, OSError) as e:
            self._cleanup()
            raise write_error(self.dst, e) from None
        except BaseException:
            self._cleanup()
            raise

    def _hand_over(self) -> None:
        with self.clock("encode: wait for the segment before"):
            self._wait()  # the one before is done: two encoders at most
        full = _Full(self._out, self._video, self.tmp, self.dst, self._lock, self.index,
                     self._count, self._first_pts, self._last_pts)  # fmt: skip
        self._out = self._video = self._lock = None
        self.index += 1
        self._count = 0
        self._finishing = self._finisher.submit(self._finish, full)

    def _finish(self, full: _Full) -> None:
        try:
            with self.clock("segment finish (own thread)"):
                full.out.mux(full.video.encode(None))  # the encoder's delayed frames
                full.out.close()
                os.replace(full.tmp, full.dst)
            with self.clock("segment fsync (own thread)"):
                fsync_path(full.dst)
                fsync_path(self.folder)
        except (av.error.FFmpegError, OSError) as e:
            with contextlib.suppress(Exception):
                full.out.close()
            full.tmp.unlink(missing_ok=True)
            raise write_error(full.dst, e) from None
        finally:
            full.lock.release()
        size = full.dst.stat().st_size
        self.on_segment(
            Segment(full.index, full.dst.name, full.frames, full.first_pts, full.last_pts, size)
        )

    def _wait(self) -> None:
        """Until the segment being finished is; its error is raised here."""
        finishing, self._finishing = self._finishing, None
        if finishing is not None:
            finishing.result()

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is not None:
                self._cleanup()  # the segment in progress goes; the full ones are kept
                with contextlib.suppress(Exception):
                    self._wait()
                return
            try:
                if self._out is not None:
                    self._hand_over()
                self._wait()
            except BaseException:
                self._cleanup()
                raise
        finally:
            self._finisher.shutdown(wait=True)


class SegmentMuxer(VideoWriter):
    """`with SegmentMuxer(info, dst, plan, files) as m: m.copy()`: the target from its segments.

    Written to a temp file beside `dst` and renamed into place, as every output is. `window`
    (a --start/--duration span) selects and shifts the side packets as the video was.
    """

    def __init__(
        self,
        info: VideoInfo,
        dst: Path,
        plan: EncodePlan,
        segments: list[Path],
        *,
        overwrite: bool = False,
        window: Window | None = None,
        warn=None,
    ):
        super().__init__(info, dst, plan, overwrite=overwrite, warn=warn)
        if not segments:
            raise ValueError("no segments to join")
        self.segments = list(segments)
        self.window = window

    def _open_video(self) -> None:
        with av.open(str(self.segments[0])) as first:
            # opaque: a stream for copied packets needs no encoder (AV1 decodes with libdav1d,
            # a name no encoder has)
            stream = self._out.add_stream_from_template(first.streams.video[0], opaque=True)
        stream.time_base = self.info.time_base
        if self.info.rotation:
            stream.set_display_rotation(self.info.rotation)
        for key in ("language", "title", "handler_name"):
            if key in self.info.metadata:
                stream.metadata[key] = self.info.metadata[key]
        self._video = stream

    def _open_sides(self) -> None:
        super()._open_sides()
        if self.window is not None and self._side_iter is not None:
            seek_sides(self._src, self.window)
            self._side_iter = side_packets(self._side_iter, self.window)

    def _flush_video(self) -> None:
        pass  # packets are copied: no encoder holds frames back

    def copy(self) -> int:
        """Copy every segment's packets, in order; returns the packets (frames) written.

        Each packet leaves with a pts (as encoded: the source's), a dts and a duration worked out
        here from the pts of all segments (timing_of), not taken from the segment files: a
        Matroska segment stores no dts at all, and a fresh encoder's first ones would run
        backwards across a seam.
        """
        timing = iter(timing_of(self.segments, self._last_duration()))
        for path in self.segments:
            with av.open(str(path)) as seg:
                stream = seg.streams.video[0]
                for packet in seg.demux(stream):
                    if not packet.size:
                        continue
                    packet.pts, packet.dts, packet.duration = next(timing)
                    packet.time_base = stream.time_base
                    self._mux_side_until(float(packet.dts * packet.time_base))
                    packet.stream = self._video
                    self._mux(packet)
                    self.stats.frames += 1
        return self.stats.frames

    def _last_duration(self) -> Fraction | None:
        """How long the last frame shows, in seconds: one frame at the source's average rate."""
        rate = self.info.average_rate
        return 1 / Fraction(rate) if rate else None


def _segment_pts(path: Path) -> tuple[list[int], Fraction]:
    """The pts of a segment's packets in decode (file) order, and their time base."""
    with av.open(str(path)) as seg:
        stream = seg.streams.video[0]
        pts = [p.pts for p in seg.demux(stream) if p.size]
        base = stream.time_base
    if any(t is None for t in pts):
        raise OutputError(f"cannot join {path.name}: a packet has no timestamp")
    return pts, base


def decode_order_dts(pts: list[int], after: int | None) -> list[int]:
    """Decode timestamps for one closed-GOP segment's packets, given their pts in decode order.

    The encoder's way: the display times, sorted, delayed by as many frames as the encoder
    reorders (a B-frame shown before the P-frame decoded ahead of it), the first ones extrapolated
    back by one frame each. Then strictly after `after` (the segment before's last dts) and never
    after a packet's own pts, which a closed GOP (its first packet shows first) always allows
    where the time base has a tick between two frames.
    """
    order = sorted(range(len(pts)), key=pts.__getitem__)
    rank = [0] * len(pts)
    for r, i in enumerate(order):
        rank[i] = r
    delay = max(0, max(i - rank[i] for i in range(len(pts))))
    shown = [pts[i] for i in order]
    step = max(1, shown[1] - shown[0]) if len(shown) > 1 else 1
    dts = []
    last = after
    for i, t in enumerate(pts):
        d = shown[i - delay] if i >= delay else shown[0] - (delay - i) * step
        if last is not None and d <= last:
            d = last + 1
        if d > t:
            raise OutputError("cannot join the segments: their timestamps overlap")
        dts.append(d)
        last = d
    return dts


def timing_of(paths: list[Path], last_duration: Fraction | None) -> list[tuple[int, int, int]]:
    """(pts, dts, duration) of every packet of the segments `paths`, in file order.

    A frame lasts until the next one shows (across seams too); the last one `last_duration`
    seconds, else as long as the frame before it.
    """
    segments = [_segment_pts(p) for p in paths]
    bases = {base for _, base in segments}
    if len(bases) != 1:
        raise OutputError("cannot join the segments: their time bases differ")
    (base,) = bases
    timing: list[tuple[int, int]] = []
    last_dts = None
    for (pts, _), path in zip(segments, paths, strict=True):
        try:
            dts = decode_order_dts(pts, last_dts)
        except OutputError:
            raise OutputError(
                f"cannot join {path.name}: its timestamps overlap the segment before"
            ) from None
        timing += zip(pts, dts, strict=True)
        last_dts = dts[-1] if dts else last_dts
    shown = sorted(t for t, _ in timing)
    following = dict(zip(shown, shown[1:], strict=False))
    if last_duration is not None:
        tail = max(1, round(last_duration / base))
    else:
        tail = shown[-1] - shown[-2] if len(shown) > 1 else 1
    return [(t, d, following[t] - t if t in following else tail) for t, d in timing]


__all__ = ["Segment", "SegmentEncoder", "SegmentMuxer", "count_frames", "segment_name"]
