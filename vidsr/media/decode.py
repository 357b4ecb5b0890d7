"""Decode a video into fixed-size batches of RGB frames, each frame with its source pts.

Frames are converted from YUV with the source's own matrix and range. 8-bit video becomes uint8
RGB; deeper video becomes uint16 RGB (rgb48), so 10-bit gradients survive the trip.
"""

from __future__ import annotations

import heapq
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import av
import numpy as np
from av.video.reformatter import Interpolation

from ..errors import Cancelled, InputError
from .filters import FilterChain, Prep
from .probe import VideoInfo

# Accurate rounding and full horizontal chroma interpolation: the default swscale path drifts by
# a level or two, which the colour round-trip tests would see.
_SWS = Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
_NO_TIMESTAMPS = 0x80  # AVFMT_NOTIMESTAMPS: raw elementary streams
# Pictures held back so that their pts labels can be sorted. Decoders return pictures in display
# order, but the labels can be a few places out of order: an AVI stores one timestamp per chunk,
# and with packed B-frames (XviD, DivX) FFmpeg labels them 1, 2, 3, 5, 4, 6, ...
_LABEL_WINDOW = 4


def working_format(info: VideoInfo) -> str:
    """The RGB format frames travel in: rgb24 for 8-bit sources, rgb48le for deeper ones."""
    return "rgb24" if info.bit_depth <= 8 else "rgb48le"


@dataclass
class FrameBatch:
    frames: np.ndarray  # (N, H, W, 3) uint8 or uint16
    pts: list[int]  # in the source stream's time_base


class FrameReader:
    """`with FrameReader(info, batch_size=4) as r: for batch in r: ...`

    Every picture the decoder returns comes out, in the decoder's (display) order; `decoded_frames`
    counts them. A packet that cannot be decoded does not lose its timestamp: the last good frame
    is repeated at that pts, and `repeated_frames` counts it. `corrupt_frames` counts frames
    FFmpeg decoded but flagged as damaged (concealed errors). `stop`, when set, ends reading with
    Cancelled.
    """

    def __init__(
        self,
        info: VideoInfo,
        *,
        batch_size: int = 1,
        stop: threading.Event | None = None,
        prep: Prep | None = None,
    ):
        self.info = info
        self.prep = prep if prep is not None and prep.active else None
        self.batch_size = max(1, batch_size)
        self.stop = stop
        self.format = working_format(info)
        self.repeated_frames = 0
        self.corrupt_frames = 0
        self.decoded_frames = 0
        self._packet_times = (0, 0, 0)  # the lowest and highest packet pts, the packet count
        self._seeked = False  # after a seek, decoding starts at the first keyframe packet
        self._container = None

    @property
    def announced_frames(self) -> int:
        """The frame count the container's header gives (0 when it gives none)."""
        return self.info.frames

    @property
    def frames_out(self) -> int:
        """Frames handed out: the decoded pictures and the repeats standing in for lost ones."""
        return self.decoded_frames + self.repeated_frames

    @property
    def truncated(self) -> bool:
        """Fewer frames came out than the header announced, and the packets stop more than two
        frames short of the duration it announced. (An AVI's count includes the ticks of dropped
        frames, or counts milliseconds; an intact one still reaches its duration.)
        """
        info, (first, last, n) = self.info, self._packet_times
        if not info.frames or self.frames_out >= info.frames or not info.duration or n < 2:
            return False
        frame = float((last - first) * info.time_base) / (n - 1)  # the mean packet spacing
        covered = float((last - first) * info.time_base) + frame
        return covered < info.duration - max(2 * frame, 0.01 * info.duration)

    def damage_summary(self) -> str | None:
        """One line on what the source lacked (truncation, undecodable packets); None if clean."""
        damaged = self.repeated_frames + self.corrupt_frames
        detail = f"{damaged} frame(s) damaged ({self.repeated_frames} repeat the last good frame)"
        if self.truncated:
            return (
                f"the container announced {self.announced_frames} frames, {self.frames_out} "
                f"came out{', ' + detail if damaged else ''}: the source is truncated"
            )
        if damaged:
            return f"the source is damaged: {detail}"
        return None

    def __enter__(self) -> FrameReader:
        try:
            self._container = av.open(str(self.info.path))
        except av.error.FFmpegError as e:
            raise InputError(f"cannot open {self.info.path}: {e}") from None
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"  # frame + slice threads inside FFmpeg's decoder
        return self

    def seek(self, pts: int) -> bool:
        """Start at the keyframe at or before `pts` (inside the with block, before iterating);
        with a clean-up chain, `pts` is in its output time base.

        False, and no seek, where the container has no timestamps (raw .h264): its frames are
        counted from the start, so reading must start there. A demuxer's index can be off: the
        caller checks the first pts that comes out (vidsr.media.span.SpanReader does).
        """
        if self._container.format.flags & _NO_TIMESTAMPS:
            return False
        if self.prep is not None:
            if not self.prep.seekable:  # decimate counts its cycles from the first frame
                return False
            # `pts` is in the clean-up's output time base (twice as fine with one frame per
            # field); a frame before it gives the filters their context (bwdif: the previous)
            out_tb = self.prep.output_info(self.info).time_base
            pts = int(pts * out_tb / self.info.time_base) - _frame_step(self.info)
        self._container.seek(pts, stream=self._container.streams.video[0], backward=True)
        self._seeked = True
        return True

    def __exit__(self, *exc) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        return frame.to_ndarray(
            format=self.format,
            src_colorspace=self.info.matrix,
            src_color_range=2 if self.info.full_range else 1,
            interpolation=_SWS,
        )

    def _decoded(self, expected: list[int]) -> Iterator[tuple[int, av.VideoFrame]]:
        """(label, picture) as the decoder returns them; every packet's pts is pushed on
        `expected`. The label is the frame's pts, else its dts, else one frame after the last.
        """
        stream = self._container.streams.video[0]
        step = _frame_step(self.info)
        last: int | None = None
        for packet in self._container.demux(stream):
            if self.stop is not None and self.stop.is_set():
                raise Cancelled("stopped")
            if self._seeked:
                # Some demuxers (MPEG-TS) land on any packet, not a keyframe: the pictures
                # decoded from there would be concealment, not the source.
                if not packet.is_keyframe:
                    continue
                self._seeked = False
            if packet.pts is not None and packet.size:
                heapq.heappush(expected, packet.pts)
                self._count_packet(packet.pts)
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                continue  # its timestamp is still expected: the hole is filled below
            for frame in frames:
                label = frame.pts if frame.pts is not None else frame.dts
                if label is None:  # raw elementary streams carry no timestamps: count frames
                    label = 0 if last is None else last + step
                if frame.is_corrupt:
                    self.corrupt_frames += 1
                self.decoded_frames += 1
                last = label
                yield label, frame

    def _count_packet(self, pts: int) -> None:
        first, last, n = self._packet_times
        self._packet_times = (min(first, pts), max(last, pts), n + 1) if n else (pts, pts, 1)

    def _sorted(self, expected: list[int]) -> Iterator[tuple[int, av.VideoFrame]]:
        """The decoder's pictures in the order it returns them, their labels sorted within a
        short window (pictures are in display order even where their labels are not).
        """
        labels: list[int] = []
        held: deque[av.VideoFrame] = deque()
        for label, frame in self._decoded(expected):
            heapq.heappush(labels, label)
            held.append(frame)
            if len(held) > _LABEL_WINDOW:
                yield heapq.heappop(labels), held.popleft()
        while held:
            yield heapq.heappop(labels), held.popleft()

    def _pictures(self) -> Iterator[tuple[av.VideoFrame, int]]:
        """(picture, pts) in presentation order, one per source timestamp, every picture kept.

        Every packet stands for one frame at its pts. When picture p comes out, an expected pts
        below p that no picture took belongs to a packet that failed to decode: it gets the frame
        shown before it. A picture whose pts is not above the last one (the muxer needs strictly
        increasing timestamps) takes the next unclaimed packet pts, else one frame later.
        """
        expected: list[int] = []
        step = _frame_step(self.info)
        last_frame: av.VideoFrame | None = None
        last_pts: int | None = None

        def holes_before(pts: int | None) -> list[int]:
            found = []
            while expected and (pts is None or expected[0] <= pts):
                t = heapq.heappop(expected)
                if t != pts and (last_pts is None or t > last_pts) and (not found or t > found[-1]):
                    found.append(t)
            return found

        for pts, frame in self._sorted(expected):
            if last_pts is not None and pts <= last_pts:
                pts = _next_free(expected, last_pts, step)
            for hole in holes_before(pts):  # before the first frame, holes show that frame
                self.repeated_frames += 1
                yield (last_frame if last_frame is not None else frame), hole
            last_frame, last_pts = frame, pts
            yield frame, pts
        if last_frame is not None:
            for hole in holes_before(None):
                self.repeated_frames += 1
                yield last_frame, hole

    def _prepared(self) -> Iterator[tuple[np.ndarray, int]]:
        """(rgb, pts): the pictures of `_pictures`, through the clean-up chain when there is
        one (pts then in its output time base), converted to RGB."""
        if self.prep is None:
            for frame, pts in self._pictures():
                yield self._to_rgb(frame), pts
            return
        chain = None
        for frame, pts in self._pictures():
            if chain is None:
                chain = FilterChain(self.info, self.prep.filters(), frame.format.name)
            frame.pts, frame.time_base = pts, self.info.time_base
            for out in chain.push(frame):
                yield self._to_rgb(out), out.pts
        for out in chain.flush() if chain is not None else ():
            yield self._to_rgb(out), out.pts

    def __iter__(self) -> Iterator[FrameBatch]:
        if self._container is None:
            raise RuntimeError("FrameReader must be used in a with block")
        frames: list[np.ndarray] = []
        pts: list[int] = []
        try:
            for rgb, t in self._prepared():
                frames.append(rgb)
                pts.append(t)
                if len(frames) == self.batch_size:
                    yield FrameBatch(np.stack(frames), pts)
                    frames, pts = [], []
        except av.error.FFmpegError as e:
            raise InputError(f"{self.info.path}: decoding failed: {e}") from None
        if frames:
            yield FrameBatch(np.stack(frames), pts)


def _next_free(expected: list[int], after: int, step: int) -> int:
    """The smallest packet pts above `after` that no picture has taken, else one `step` on
    (timestamps that jump back, as in a badly joined file, continue at the frame rate).
    """
    while expected and expected[0] <= after:
        heapq.heappop(expected)
    return heapq.heappop(expected) if expected else after + step


def _frame_step(info: VideoInfo) -> int:
    """One frame's duration in time_base units (for streams without pts)."""
    if info.average_rate:
        return max(1, round(1 / (info.average_rate * info.time_base)))
    return 1
