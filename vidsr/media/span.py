"""A part of a video by time: frame-exact reading from a seek, and the side packets that go with it.

`--start T --duration D` keeps the frames with start <= pts < start + D (T counted from the first
frame), shifted so that the output begins where the source does. A resumed run reads the frames
after the last one its segments hold. Both seek near their first frame and then compare pts:
a demuxer's index may land late, and then reading starts over from the beginning instead.

Audio packets are copied, not re-encoded: those that start inside the span. So the audio begins
less than one packet after the first frame and ends less than one packet after the span (an AAC
packet is 21 ms at 48 kHz). A subtitle that is showing when the span starts is kept, shortened.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from .decode import _NO_TIMESTAMPS, FrameBatch, FrameReader
from .probe import VideoInfo

# Side packets are read this far past the span's end before reading stops: demuxers interleave
# streams loosely, so a packet inside the span can come after one beyond it.
_READ_PAST = 10.0
# Subtitles begin before the frames they go with; the side streams are sought this much earlier.
_SEEK_BEFORE = 10.0


@dataclass(frozen=True)
class Window:
    """Frames with first <= pts < end (source time_base; None: open), written at pts - offset."""

    time_base: Fraction
    first: int | None = None
    end: int | None = None
    offset: int = 0
    origin: int = 0  # the pts the video starts at

    def seconds(self, pts: int | None) -> Fraction | None:
        return None if pts is None else pts * self.time_base

    def after(self, pts: int) -> Window:
        """The rest of this window after the frame at `pts` (a resumed run's frames)."""
        return Window(self.time_base, pts + 1, self.end, self.offset, self.origin)


def video_origin(info: VideoInfo) -> int:
    """The pts the video stream starts at (a transport stream's may be seconds in)."""
    with av.open(str(info.path)) as c:
        start = c.streams.video[0].start_time
    return int(start) if start is not None else 0


def span_window(info: VideoInfo, start: float | None, duration: float | None) -> Window | None:
    """The window of `--start/--duration` in the source's pts, or None for the whole video."""
    if start is None and duration is None:
        return None
    tb = info.time_base
    origin = video_origin(info)
    begin = Fraction(start or 0).limit_denominator(10**6)
    first = origin + math.ceil(begin / tb) if start else None
    end = None
    if duration is not None:
        end = origin + math.ceil((begin + Fraction(duration).limit_denominator(10**6)) / tb)
    return Window(tb, first, end, (first - origin) if first is not None else 0, origin)


def frame_pts(info: VideoInfo, window: Window | None = None) -> list[int] | None:
    """The pts of the frames a read of `window` gives, in order, from the packets alone (no
    decoding): FrameReader makes one frame per packet timestamp. None where the container has
    no timestamps (a raw .h264 cannot be read from a point)."""
    with av.open(str(info.path)) as c:
        if c.format.flags & _NO_TIMESTAMPS:
            return None
        stream = c.streams.video[0]
        found = {p.pts for p in c.demux(stream) if p.pts is not None and p.size}
    first = window.first if window is not None else None
    end = window.end if window is not None else None
    return sorted(t for t in found if (first is None or t >= first) and (end is None or t < end))


def segment_windows(span: Window | None, pts: list[int], per: int, time_base) -> list[Window]:
    """`pts` cut every `per` frames, as a sequential run cuts its segments: window k holds the
    frames of segment k. They tile the span, so every frame a reader gives falls in one."""
    base = span or Window(time_base)
    starts = pts[per::per]
    firsts = [base.first, *starts]
    ends = [*starts, base.end]
    return [
        Window(base.time_base, first, end, base.offset, base.origin)
        for first, end in zip(firsts, ends, strict=True)
    ]


def expected_frames(info: VideoInfo, window: Window | None) -> int:
    """About how many frames the output will have (for progress and ETA); 0 when unknown."""
    if window is None or window.end is None or not info.average_rate:
        if not info.frames and info.duration and info.average_rate:  # Matroska counts none
            return round(info.duration * float(info.average_rate))
        return info.frames
    begin = window.first if window.first is not None else window.origin
    seconds = float((window.end - begin) * window.time_base)
    estimate = round(seconds * float(info.average_rate))
    return min(estimate, info.frames) if info.frames else estimate


class SpanReader:
    """FrameReader's batches, restricted to `window`, read from a seek near its start.

    `seek_to` is a pts at or before the first wanted frame. The first frame that comes out after
    the seek must be at or before it: else the seek landed late and reading starts over from the
    beginning. Frames are the same as an unbroken read's (decoding restarts on a keyframe).
    """

    def __init__(
        self, info: VideoInfo, window: Window, *, batch_size: int = 1, seek_to: int | None = None
    ):
        self.info = info
        self.window = window
        self.batch_size = max(1, batch_size)
        self.seek_to = seek_to if seek_to is not None else window.first
        self.stop = None  # set by the pipeline, handed to the FrameReader
        self._reader: FrameReader | None = None

    @property
    def repeated_frames(self) -> int:
        return self._reader.repeated_frames if self._reader is not None else 0

    @property
    def corrupt_frames(self) -> int:
        return self._reader.corrupt_frames if self._reader is not None else 0

    def damage_summary(self) -> str | None:
        """The damaged frames of this read. Not truncation: a span or a resumed run reads part
        of the file, fewer frames than the header announces, by design."""
        damaged = self.repeated_frames + self.corrupt_frames
        if not damaged:
            return None
        return (
            f"the source is damaged: {damaged} frame(s) damaged "
            f"({self.repeated_frames} repeat the last good frame)"
        )

    def __enter__(self) -> SpanReader:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def __iter__(self) -> Iterator[FrameBatch]:
        frames: list[np.ndarray] = []
        pts: list[int] = []
        for rgb, t in self._frames():
            frames.append(rgb)
            pts.append(t)
            if len(frames) == self.batch_size:
                yield FrameBatch(np.stack(frames), pts)
                frames, pts = [], []
        if frames:
            yield FrameBatch(np.stack(frames), pts)

    def _frames(self) -> Iterator[tuple[np.ndarray, int]]:
        seek = self.seek_to
        while True:
            with FrameReader(self.info, batch_size=self.batch_size, stop=self.stop) as reader:
                self._reader = reader
                seeked = seek is not None and reader.seek(seek)
                late = yield from self._window(reader, seek if seeked else None)
            if not late:
                return
            seek = None  # the index led past the target: read from the beginning

    def _window(self, reader: FrameReader, seek: int | None):
        """The wanted frames of one read; returns True when the seek landed late."""
        first, end = self.window.first, self.window.end
        checked = seek is None
        for batch in reader:
            for rgb, pts in zip(batch.frames, batch.pts, strict=True):
                if not checked:
                    if pts > seek:
                        return True
                    checked = True
                if first is not None and pts < first:
                    continue
                if end is not None and pts >= end:
                    return False
                yield rgb, pts
        return False


def seek_sides(container: av.container.InputContainer, window: Window) -> None:
    """Move the side streams' reading to a little before the span (a film's audio is long)."""
    begin = window.seconds(window.first)
    if begin is not None and begin > _SEEK_BEFORE:
        container.seek(int((begin - _SEEK_BEFORE) * av.time_base), backward=True)


def side_packets(packets: Iterator[av.Packet], window: Window) -> Iterator[av.Packet]:
    """The side packets that belong with `window`, their timestamps shifted as the video's."""
    begin, end = window.seconds(window.first), window.seconds(window.end)
    shift = window.offset * window.time_base
    for packet in packets:
        if packet.pts is None or packet.time_base is None:
            if packet.dts is None:  # a demuxer's end-of-stream marker: flushes a decoder
                yield packet
            continue
        t = packet.pts * packet.time_base
        if end is not None and t >= end + _READ_PAST:
            return
        if packet.stream.type == "subtitle" and not _clip_subtitle(packet, begin, end):
            continue
        if packet.stream.type != "subtitle" and not _inside(t, begin, end):
            continue
        if shift:
            units = round(shift / packet.time_base)
            packet.pts -= units
            if packet.dts is not None:
                packet.dts -= units
        yield packet


def _inside(t: Fraction, begin: Fraction | None, end: Fraction | None) -> bool:
    return (begin is None or t >= begin) and (end is None or t < end)


def _clip_subtitle(packet: av.Packet, begin: Fraction | None, end: Fraction | None) -> bool:
    """Keep a subtitle that shows during the span; one that began before it starts with it."""
    tb = packet.time_base
    t = packet.pts * tb
    if end is not None and t >= end:
        return False
    if begin is None or t >= begin:
        return True
    if not packet.duration or t + packet.duration * tb <= begin:
        return False
    cut = math.ceil(begin / tb) - packet.pts
    packet.pts += cut
    if packet.dts is not None:
        packet.dts += cut
    packet.duration -= cut
    return True


__all__ = [
    "SpanReader",
    "Window",
    "expected_frames",
    "frame_pts",
    "segment_windows",
    "side_packets",
    "span_window",
]
