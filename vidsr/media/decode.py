"""Decode a video into fixed-size batches of RGB frames, each frame with its source pts.

Frames are converted from YUV with the source's own matrix and range. 8-bit video becomes uint8
RGB; deeper video becomes uint16 RGB (rgb48), so 10-bit gradients survive the trip.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import av
import numpy as np
from av.video.reformatter import Interpolation

from ..errors import Cancelled, InputError
from .probe import VideoInfo

# Accurate rounding and full horizontal chroma interpolation: the default swscale path drifts by
# a level or two, which the colour round-trip tests would see.
_SWS = Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
_NO_TIMESTAMPS = 0x80  # AVFMT_NOTIMESTAMPS: raw elementary streams


def working_format(info: VideoInfo) -> str:
    """The RGB format frames travel in: rgb24 for 8-bit sources, rgb48le for deeper ones."""
    return "rgb24" if info.bit_depth <= 8 else "rgb48le"


@dataclass
class FrameBatch:
    frames: np.ndarray  # (N, H, W, 3) uint8 or uint16
    pts: list[int]  # in the source stream's time_base


class FrameReader:
    """`with FrameReader(info, batch_size=4) as r: for batch in r: ...`

    A packet that cannot be decoded does not lose its timestamp: the last good frame is repeated at
    that pts, and `repeated_frames` counts it. `corrupt_frames` counts frames FFmpeg decoded but
    flagged as damaged (concealed errors). `stop`, when set, ends reading with Cancelled.
    """

    def __init__(
        self, info: VideoInfo, *, batch_size: int = 1, stop: threading.Event | None = None
    ):
        self.info = info
        self.batch_size = max(1, batch_size)
        self.stop = stop
        self.format = working_format(info)
        self.repeated_frames = 0
        self.corrupt_frames = 0
        self.dropped_frames = 0
        self.frames_read = 0
        self._container = None

    def __enter__(self) -> FrameReader:
        try:
            self._container = av.open(str(self.info.path))
        except av.error.FFmpegError as e:
            raise InputError(f"cannot open {self.info.path}: {e}") from None
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"  # frame + slice threads inside FFmpeg's decoder
        return self

    def seek(self, pts: int) -> bool:
        """Start at the keyframe at or before `pts` (inside the with block, before iterating).

        False, and no seek, where the container has no timestamps (raw .h264): its frames are
        counted from the start, so reading must start there. A demuxer's index can be off: the
        caller checks the first pts that comes out (vidsr.media.span.SpanReader does).
        """
        if self._container.format.flags & _NO_TIMESTAMPS:
            return False
        self._container.seek(pts, stream=self._container.streams.video[0], backward=True)
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

    def _decoded(self, expected: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        """(pts, rgb) as the decoder returns them; every packet's pts is pushed on `expected`."""
        stream = self._container.streams.video[0]
        step = _frame_step(self.info)
        last_pts: int | None = None
        for packet in self._container.demux(stream):
            if self.stop is not None and self.stop.is_set():
                raise Cancelled("stopped")
            if packet.pts is not None and packet.size:
                heapq.heappush(expected, packet.pts)
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                continue  # its timestamp is still expected: the hole is filled below
            for frame in frames:
                pts = frame.pts
                if pts is None:  # raw elementary streams carry no timestamps: count frames instead
                    pts = 0 if last_pts is None else last_pts + step
                if frame.is_corrupt:
                    self.corrupt_frames += 1
                last_pts = pts
                yield pts, self._to_rgb(frame)

    def _frames(self) -> Iterator[tuple[np.ndarray, int]]:
        """(rgb, pts) in presentation order, one per source timestamp.

        Every packet stands for one frame at its pts. Decoders return frames in presentation
        order, so when frame p comes out, an expected pts below p that never came out belongs to a
        packet that failed to decode: it gets the frame shown before it. A pts that repeats an
        earlier one is dropped, since the muxer needs strictly increasing timestamps.
        """
        expected: list[int] = []
        last_rgb: np.ndarray | None = None
        last_pts: int | None = None

        def holes_before(pts: int | None) -> list[int]:
            found = []
            while expected and (pts is None or expected[0] <= pts):
                t = heapq.heappop(expected)
                if t != pts and (last_pts is None or t > last_pts) and (not found or t > found[-1]):
                    found.append(t)
            return found

        for pts, rgb in self._decoded(expected):
            if last_pts is not None and pts <= last_pts:
                self.dropped_frames += 1
                continue
            for hole in holes_before(pts):  # before the first frame, holes show that frame
                self.repeated_frames += 1
                yield (last_rgb if last_rgb is not None else rgb), hole
            last_rgb, last_pts = rgb, pts
            yield rgb, pts
        if last_rgb is not None:
            for hole in holes_before(None):
                self.repeated_frames += 1
                yield last_rgb, hole

    def __iter__(self) -> Iterator[FrameBatch]:
        if self._container is None:
            raise RuntimeError("FrameReader must be used in a with block")
        frames: list[np.ndarray] = []
        pts: list[int] = []
        try:
            for rgb, t in self._frames():
                frames.append(rgb)
                pts.append(t)
                self.frames_read += 1
                if len(frames) == self.batch_size:
                    yield FrameBatch(np.stack(frames), pts)
                    frames, pts = [], []
        except av.error.FFmpegError as e:
            raise InputError(f"{self.info.path}: decoding failed: {e}") from None
        if frames:
            yield FrameBatch(np.stack(frames), pts)


def _frame_step(info: VideoInfo) -> int:
    """One frame's duration in time_base units (for streams without pts)."""
    if info.average_rate:
        return max(1, round(1 / (info.average_rate * info.time_base)))
    return 1
