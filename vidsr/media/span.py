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

from ..errors import InputError
from .decode import _NO_TIMESTAMPS, FrameBatch, FrameReader
from .filters import Prep
from .probe import VideoInfo

# Side packets are read this far past the span's end before reading stops: demuxers interleave
# streams loosely, so a packet inside the span can come after one beyond it.
_READ_PAST = 10.0
# Subtitles begin before the frames they go with; the side streams are sought this much earlier.
_SEEK_BEFORE = 10.0
# The largest pts FFmpeg takes (int64): a start later than any file is simply past its end.
_LAST_PTS = 2**62


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


# Packets read to find a frame by time: enough to see past any decoder's reordering.
_LOOK_AHEAD = 16


def video_origin(info: VideoInfo) -> int:
    """The pts of the video's first frame (a transport stream's may be seconds in): the lowest
    of its first packets' pts, since with B-frames the first packet shows first but the stream's
    start_time may be its decode time."""
    with av.open(str(info.path)) as c:
        stream = c.streams.video[0]
        found = []
        for packet in c.demux(stream):
            if packet.pts is not None and packet.size:
                found.append(packet.pts)
            if len(found) >= _LOOK_AHEAD:
                break
        start = stream.start_time
    if found:
        return min(found)
    return int(start) if start is not None else 0


def first_frame_at(info: VideoInfo, pts: int) -> int | None:
    """The pts of the first frame at or after `pts`; None when no frame is that late.

    Read from a seek to the keyframe before `pts`; where the index lands late (the first packet
    is already past `pts`), or the container has no timestamps to seek by, from the start.
    """
    with av.open(str(info.path)) as c:
        if not c.format.flags & _NO_TIMESTAMPS:
            c.seek(pts, stream=c.streams.video[0], backward=True)
            landed, found = _scan(c, pts, landing=True)
            if landed:
                return found
    with av.open(str(info.path)) as c:
        return _scan(c, pts, landing=False)[1]


def _scan(c: av.container.InputContainer, pts: int, *, landing: bool) -> tuple[bool, int | None]:
    """(False if `landing` and the first packet read is already past `pts`; else True and the
    lowest pts at or after `pts` among the next packets, None if there is none)."""
    later: list[int] = []
    first = True
    for packet in c.demux(c.streams.video[0]):
        if packet.pts is None or not packet.size:
            continue
        if landing and first and packet.pts > pts:
            return False, None
        first = False
        if packet.pts >= pts:
            later.append(packet.pts)
            if len(later) >= _LOOK_AHEAD:
                break
    return True, (min(later) if later else None)


def span_window(
    info: VideoInfo, start: float | None, duration: float | None, prep: Prep | None = None
) -> Window | None:
    """The window of `--start/--duration` in the source's pts, or None for the whole video.

    Times count from the first frame's pts (`origin`). The window begins at the first frame at
    or after the start, and the output is shifted by that frame's distance from the origin: it
    begins where the source does, whether or not a frame falls exactly on the start.
    """
    if start is None and duration is None:
        return None
    tb = info.time_base
    origin = video_origin(info)
    begin = Fraction(start or 0).limit_denominator(10**6)
    first = origin + math.ceil(begin / tb) if start else None
    end = None
    if duration is not None:
        end = origin + math.ceil((begin + Fraction(duration).limit_denominator(10**6)) / tb)
        if end > _LAST_PTS:
            end = None  # longer than any file can be: to the end
    asked = first
    if first is not None and (end is None or first < end):
        found = first_frame_at(info, first) if first <= _LAST_PTS else None
        if found is None:
            raise InputError(f"{info.path}: no frame in the --start/--duration span")
        first = found
    window = Window(tb, first, end, (first - origin) if first is not None else 0, origin)
    if prep is None or not prep.active:
        return window
    out = output_window(window, info, prep)
    if prep.deinterlace == "field" and asked is not None and info.average_rate:
        # the second field of the frame before the first one may be at or after the start too
        field = 2 * first - round(1 / (info.average_rate * tb))  # in the output's time base
        if field >= 2 * asked:
            out = Window(out.time_base, field, out.end, field - out.origin, out.origin)
    return out


def output_window(window: Window, info: VideoInfo, prep: Prep) -> Window:
    """A span's window in the time base of the frames the clean-up gives. One frame per field:
    every time doubles, exactly. Inverse telecine: decimate times its frames anew, evenly from
    the first (rounded to its time base), so the span's first frame is the first output frame
    at or after the source frame that starts it."""
    out_tb = prep.output_info(info).time_base
    if not prep.ivtc:
        k = int(info.time_base / out_tb)  # 1, or 2 for one frame per field

        def scaled(t: int | None) -> int | None:
            return None if t is None else t * k

        return Window(out_tb, scaled(window.first), scaled(window.end), window.offset * k,
                      window.origin * k)  # fmt: skip

    def later(t: int | None) -> int | None:
        return None if t is None else math.ceil(t * info.time_base / out_tb)

    origin = round(window.origin * info.time_base / out_tb)
    first = max(origin, later(window.first)) if window.first is not None else None
    offset = first - origin if first is not None else 0
    return Window(out_tb, first, later(window.end), offset, origin)


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
    """About how many frames the output will have (for progress and ETA); 0 when unknown.

    The container's count where it has one (the pictures its index lists, where that is fewer),
    else duration x rate; a span's share of that by time. The pipeline reports the true count
    when reading ends, so an estimate never leaves a bar short.
    """
    count = info.indexed_frames or info.frames
    rate = float(info.average_rate) if info.average_rate else 0.0
    if not count and info.duration and rate:  # Matroska and MPEG-TS count none
        count = round(info.duration * rate)
    if window is None or window.end is None or not rate:
        return count
    begin = window.first if window.first is not None else window.origin
    estimate = round(float((window.end - begin) * window.time_base) * rate)
    return max(0, min(estimate, count) if count else estimate)


class SpanReader:
    """FrameReader's batches, restricted to `window`, read from a seek near its start.

    `seek_to` is a pts at or before the first wanted frame. The first frame that comes out after
    the seek must be at or before it: else the seek landed late and reading starts over from the
    beginning. Frames are the same as an unbroken read's (decoding restarts on a keyframe).
    """

    def __init__(
        self,
        info: VideoInfo,
        window: Window,
        *,
        batch_size: int = 1,
        seek_to: int | None = None,
        prep: Prep | None = None,
    ):
        self.info = info
        self.prep = prep
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
            with FrameReader(self.info, batch_size=self.batch_size, stop=self.stop,
                             prep=self.prep) as reader:  # fmt: skip
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
