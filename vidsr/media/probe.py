"""Read what a video is before touching its frames: size, timing, pixel format, colour, streams."""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from ..errors import InputError

# FFmpeg's AVCOL_* numbers; 2 is "unspecified" for primaries, transfer and matrix alike.
UNSPECIFIED = 2
MATRIX_NAMES = {
    1: "bt709",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    9: "bt2020nc",
    10: "bt2020c",
}
RANGE_NAMES = {0: "unspecified", 1: "limited", 2: "full"}


@dataclass(frozen=True)
class MasteringDisplay:
    """SMPTE ST 2086 mastering display colour volume: CIE xy chromaticities, luminance in cd/m2."""

    red: tuple[float, float]
    green: tuple[float, float]
    blue: tuple[float, float]
    white: tuple[float, float]
    min_luminance: float
    max_luminance: float


@dataclass(frozen=True)
class StreamInfo:
    index: int
    type: str  # audio, subtitle, data, attachment
    codec: str
    language: str | None = None


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    container: str
    width: int
    height: int
    pix_fmt: str
    bit_depth: int
    time_base: Fraction
    average_rate: Fraction | None
    frames: int  # from the container header; 0 when unknown
    duration: float | None  # seconds
    codec: str
    color_primaries: int = UNSPECIFIED
    color_trc: int = UNSPECIFIED
    colorspace: int = UNSPECIFIED  # the YUV matrix
    color_range: int = 0  # 0 unspecified, 1 limited (MPEG), 2 full (JPEG)
    rotation: int = 0  # degrees, from the display matrix
    mastering_display: MasteringDisplay | None = (
        None  # HDR10 static metadata, when the source has it
    )
    content_light: tuple[int, int] | None = None  # (MaxCLL, MaxFALL) in cd/m2
    other_streams: tuple[StreamInfo, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    # Pictures the container's index lists, where it lists fewer than `frames` counts: an AVI
    # counts the ticks of dropped frames (a VFR AVI announces 444 and holds 68); 0 otherwise.
    indexed_frames: int = 0

    @property
    def matrix(self) -> int:
        """The YUV matrix to decode with: the tag, or the usual guess by size when untagged."""
        if self.colorspace in MATRIX_NAMES:
            return self.colorspace
        # What players do with untagged video: HD is BT.709, SD is BT.601.
        return 1 if self.height >= 720 or self.width >= 1280 else 6

    @property
    def full_range(self) -> bool:
        return self.color_range == 2 or self.pix_fmt.startswith("yuvj")


def _bit_depth(pix_fmt: str) -> int:
    try:
        fmt = av.VideoFormat(pix_fmt)
        return max(c.bits for c in fmt.components)
    except Exception:  # noqa: BLE001 - exotic formats: assume 8 bits
        return 8


def probe(path: str | Path) -> VideoInfo:
    """Open `path` and describe its first video stream; InputError when that is not possible."""
    path = Path(path)
    _check_file(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path} has no video stream")
            stream = container.streams.video[0]
            cc = stream.codec_context
            if cc.codec is None or not cc.codec.name:
                raise InputError(f"{path}: its video codec cannot be decoded")
            if not cc.width or not cc.height or cc.pix_fmt is None:
                raise InputError(f"{path}: the video stream has no usable size or pixel format")
            duration = None
            if stream.duration is not None and stream.time_base:
                duration = float(stream.duration * stream.time_base)
            elif container.duration:
                duration = container.duration / av.time_base
            others = tuple(
                StreamInfo(
                    s.index,
                    s.type,
                    s.codec_context.name if s.codec_context else "?",
                    s.metadata.get("language"),
                )
                for s in container.streams
                if s.index != stream.index
            )
            first = _first_frame(container, stream)
            return VideoInfo(
                path=path,
                container=container.format.name,
                width=cc.width,
                height=cc.height,
                pix_fmt=cc.pix_fmt,
                bit_depth=_bit_depth(cc.pix_fmt),
                time_base=stream.time_base or Fraction(1, 90000),
                average_rate=stream.average_rate or stream.guessed_rate,
                frames=stream.frames or 0,
                duration=duration,
                codec=cc.name,
                color_primaries=int(cc.color_primaries),
                color_trc=int(cc.color_trc),
                colorspace=int(cc.colorspace),
                color_range=int(cc.color_range),
                rotation=_rotation(first),
                mastering_display=_mastering_display(first),
                content_light=_content_light(first),
                other_streams=others,
                metadata=dict(container.metadata),
                indexed_frames=_indexed_frames(stream),
            )
    except InputError:
        raise
    except av.error.FFmpegError as e:
        raise InputError(f"{path} is not a readable video ({_reason(e)})") from None
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read {path}: {e}") from None


def _indexed_frames(stream: av.video.stream.VideoStream) -> int:
    """The index's entries where it has fewer than the header's frame count (see VideoInfo)."""
    try:
        entries = len(stream.index_entries)
    except (AttributeError, av.error.FFmpegError):
        return 0
    return entries if 0 < entries < (stream.frames or 0) else 0


def _check_file(path: Path) -> None:
    """InputError unless `path` is a regular file: opening a FIFO waits for a writer, a device
    reads without end."""
    if not path.exists():
        raise InputError(f"no such file: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a video file")
    kind = _special_kind(path)
    if kind:
        raise InputError(f"{path} is a {kind}, not a regular file; vidsr reads video files")


def _special_kind(path: Path) -> str | None:
    """What a non-regular file is (FIFO, device, socket); None for a regular file."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # probing reports what is wrong with it
    kinds = {
        stat.S_ISFIFO: "FIFO (named pipe)",
        stat.S_ISCHR: "character device",
        stat.S_ISBLK: "block device",
        stat.S_ISSOCK: "socket",
    }
    return next((name for test, name in kinds.items() if test(mode)), None)


def _first_frame(container, stream):
    """The first decodable frame: rotation and HDR metadata arrive as its side data in PyAV 18."""
    try:
        for frame in container.decode(stream):
            return frame
    except Exception:  # noqa: BLE001 - metadata is optional; decoding errors surface later
        pass
    return None


def _side_data(frame, name: str) -> bytes | None:
    if frame is None:
        return None
    for sd in frame.side_data:
        if sd.type.name == name:
            return bytes(sd)
    return None


def _rotation(frame) -> int:
    """Degrees of the display-matrix rotation (0 when absent)."""
    try:
        return int(round(frame.rotation)) % 360 if frame is not None else 0
    except Exception:  # noqa: BLE001 - rotation is optional metadata
        return 0


def _mastering_display(frame) -> MasteringDisplay | None:
    # AVMasteringDisplayMetadata: 10 AVRationals (r, g, b, white xy; min, max luminance), 2 flags.
    data = _side_data(frame, "MASTERING_DISPLAY_METADATA")
    if data is None or len(data) < 88:
        return None
    v = struct.unpack_from("<22i", data)
    q = [v[2 * i] / v[2 * i + 1] if v[2 * i + 1] else 0.0 for i in range(10)]
    if not (v[20] and v[21]):  # has_primaries, has_luminance: encoders need both
        return None
    return MasteringDisplay((q[0], q[1]), (q[2], q[3]), (q[4], q[5]), (q[6], q[7]), q[8], q[9])


def _content_light(frame) -> tuple[int, int] | None:
    data = _side_data(frame, "CONTENT_LIGHT_LEVEL")
    if data is None or len(data) < 8:
        return None
    return struct.unpack_from("<2I", data)


def _reason(e: Exception) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return msg.strip().splitlines()[0] if msg else type(e).__name__
