"""Write the upscaled video: encode RGB frames at their source pts, remux the other streams.

`VideoWriter` is a context manager over a temporary file beside the target. Audio and subtitle
packets are copied, not re-encoded, and interleaved by time with the video. On success the
temporary file is renamed into place; on any failure it is removed, so the target path never holds
a half-written file.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import Interpolation

from ..config import EncodeConfig
from ..errors import OutputError
from .probe import RANGE_NAMES, VideoInfo

TEMP_MARKER = ".vidsr-tmp"
_SWS = Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
# Container-level tags the muxer writes itself; copying them would describe the wrong file.
_MUXER_TAGS = {"major_brand", "minor_version", "compatible_brands", "encoder", "duration"}


def temp_path_for(dst: Path) -> Path:
    """The hidden file beside `dst` that is written first (keeps the extension: it picks the muxer)."""
    return dst.with_name(f".{dst.stem}{TEMP_MARKER}-{os.getpid()}{dst.suffix}")


def choose_pix_fmt(codec: str, info: VideoInfo, requested: str | None) -> str:
    """The encoder pixel format: asked for, else the source's, else 4:2:0 at the source's depth."""
    supported = [f.name for f in (av.Codec(codec, "w").video_formats or ())]
    if requested:
        if supported and requested not in supported:
            raise OutputError(f"encoder {codec} cannot write pixel format {requested}")
        return requested
    source = info.pix_fmt.replace("yuvj", "yuv")  # yuvj* are deprecated aliases for full range
    candidates = [source]
    if info.bit_depth > 8:
        candidates += ["yuv420p10le", "yuv422p10le", "yuv444p10le", "p010le"]
    candidates += ["yuv420p", "yuv444p", "rgb24", "gbrp"]
    for fmt in candidates:
        if not supported or fmt in supported:
            return fmt
    return supported[0]


@dataclass
class _Side:
    """A non-video source stream and how it reaches the output."""

    source: av.stream.Stream
    output: av.stream.Stream
    decoder: av.codec.CodecContext | None = None  # set when the stream is transcoded
    resampler: av.AudioResampler | None = None
    packets: int = 0


@dataclass
class WriteStats:
    frames: int = 0
    side_packets: dict[int, int] = field(default_factory=dict)  # source stream index -> packets
    warnings: list[str] = field(default_factory=list)


class VideoWriter:
    """`with VideoWriter(info, dst, EncodeConfig()) as w: w.write(rgb, pts)`; renamed on success."""

    def __init__(
        self,
        info: VideoInfo,
        dst: Path,
        encode: EncodeConfig,
        *,
        scale: int = 4,
        overwrite: bool = False,
        warn=None,
    ):
        self.info = info
        self.dst = Path(dst)
        self.tmp = temp_path_for(self.dst)
        self.encode_config = encode
        self.scale = scale
        self.overwrite = overwrite
        self.stats = WriteStats()
        self._warn = warn or (lambda msg: None)
        self._out = None
        self._src = None
        self._video = None
        self._sides: dict[int, _Side] = {}
        self._side_iter = None
        self._pending = None  # the next side packet, read ahead of time
        self._format = "rgb24" if info.bit_depth <= 8 else "rgb48le"

    # -- setup ---------------------------------------------------------------------------------
    def __enter__(self) -> VideoWriter:
        if self.dst.exists() and not self.overwrite:
            raise OutputError(f"{self.dst} exists; pass --overwrite to replace it")
        if not self.dst.parent.is_dir():
            raise OutputError(f"output folder does not exist: {self.dst.parent}")
        if not os.access(self.dst.parent, os.W_OK | os.X_OK):
            raise OutputError(f"output folder is not writable: {self.dst.parent}")
        try:
            self._out = av.open(str(self.tmp), "w")
        except ValueError:
            raise OutputError(
                f"unknown container for {self.dst.name}: use .mp4, .mkv, .mov or .webm"
            ) from None
        except (av.error.FFmpegError, OSError) as e:
            self._cleanup()
            raise OutputError(f"cannot write {self.dst}: {_reason(e)}") from None
        try:
            self._open_video()
            self._open_sides()
            meta = {k: v for k, v in self.info.metadata.items() if k not in _MUXER_TAGS}
            self._out.metadata.update(meta)
            self._out.start_encoding()
        except BaseException:
            self._cleanup()
            raise
        return self

    def _open_video(self) -> None:
        info, cfg = self.info, self.encode_config
        if cfg.codec not in av.codecs_available:
            raise OutputError(f"encoder {cfg.codec!r} is not available in this FFmpeg build")
        if (
            self._out.supported_codecs
            and _codec_id_name(cfg.codec) not in self._out.supported_codecs
        ):
            raise OutputError(f"{self.dst.suffix} files cannot hold {cfg.codec} video")
        rate = info.average_rate or Fraction(25)
        stream = self._out.add_stream(cfg.codec, rate=rate)
        stream.width = info.width * self.scale
        stream.height = info.height * self.scale
        stream.pix_fmt = choose_pix_fmt(cfg.codec, info, cfg.pix_fmt)
        stream.time_base = info.time_base
        cc = stream.codec_context
        cc.time_base = info.time_base  # frames keep their source pts, so VFR survives exactly
        # Tags describe what the pixels are: the source's, with the matrix and range we actually
        # used when the source left them unspecified (players guess by size, and 4x changes it).
        cc.color_primaries = info.color_primaries
        cc.color_trc = info.color_trc
        cc.colorspace = info.matrix
        cc.color_range = 2 if info.full_range else 1
        options = dict(cfg.options)
        if cfg.crf is not None:
            options.setdefault("crf", str(cfg.crf))
        if cfg.preset is not None:
            options.setdefault("preset", str(cfg.preset))
        stream.options = options
        if info.rotation:
            stream.set_display_rotation(info.rotation)
        for key in ("language", "title", "handler_name"):
            if key in info.metadata:
                stream.metadata[key] = info.metadata[key]
        self._video = stream

    def _open_sides(self) -> None:
        if not self.info.other_streams:
            return
        self._src = av.open(str(self.info.path))
        supported = self._out.supported_codecs
        for s in self._src.streams:
            if s.type == "video":
                continue
            name = s.codec_context.name if s.codec_context else "?"
            if s.type not in ("audio", "subtitle", "attachment"):
                self._warn(f"stream #{s.index} ({s.type}, {name}) is not copied")
                continue
            if not supported or name in supported:
                out = self._out.add_stream_from_template(s)
                out.metadata.update(s.metadata)
                self._sides[s.index] = _Side(s, out)
            elif s.type == "audio":
                self._warn(
                    f"{self.dst.suffix} cannot hold {name} audio: stream #{s.index} is re-encoded to AAC"
                )
                out = self._out.add_stream("aac", rate=s.codec_context.sample_rate)
                out.layout = s.codec_context.layout
                out.metadata.update(s.metadata)
                resampler = av.AudioResampler(
                    format="fltp", layout=s.codec_context.layout, rate=s.codec_context.sample_rate
                )
                self._sides[s.index] = _Side(s, out, s.codec_context, resampler)
            else:
                self._warn(
                    f"{self.dst.suffix} cannot hold {name} {s.type}s: stream #{s.index} is dropped"
                )
        if self._sides:
            self._side_iter = self._src.demux(*[side.source for side in self._sides.values()])

    # -- writing -------------------------------------------------------------------------------
    def write(self, rgb: np.ndarray, pts: int) -> None:
        """Encode one (H, W, 3) uint8/uint16 RGB frame at `pts` (source time_base)."""
        frame = av.VideoFrame.from_ndarray(rgb, format=self._format)
        frame = frame.reformat(
            format=self._video.pix_fmt,
            dst_colorspace=self.info.matrix,
            dst_color_range=2 if self.info.full_range else 1,
            interpolation=_SWS,
        )
        frame.pts = pts
        frame.time_base = self.info.time_base
        self._mux_side_until(float(pts * self.info.time_base))
        self._mux(self._video.encode(frame))
        self.stats.frames += 1

    def _mux(self, packets) -> None:
        try:
            self._out.mux(packets)
        except (av.error.FFmpegError, OSError) as e:
            raise _write_error(self.dst, e) from None

    def _mux_side_until(self, seconds: float | None) -> None:
        """Copy side-stream packets up to `seconds` (all of them when None)."""
        if self._side_iter is None:
            return
        while True:
            if self._pending is None:
                self._pending = next(self._side_iter, None)
                if self._pending is None:
                    self._side_iter = None
                    return
            packet = self._pending
            if packet.dts is not None and seconds is not None and packet.time_base:
                if float(packet.dts * packet.time_base) > seconds:
                    return
            self._pending = None
            side = self._sides[packet.stream.index]
            if side.decoder is None:
                if packet.dts is None:  # the demuxer's end-of-stream marker
                    continue
                packet.stream = side.output
                self._mux(packet)
            else:
                for frame in side.decoder.decode(packet):
                    for f in side.resampler.resample(frame):
                        self._mux(side.output.encode(f))
            side.packets += 1
            self.stats.side_packets[side.source.index] = side.packets

    # -- finishing -----------------------------------------------------------------------------
    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._cleanup()
            return
        try:
            self._mux(self._video.encode(None))  # flush the encoder's delayed frames
            self._mux_side_until(None)
            for side in self._sides.values():
                if side.decoder is not None:
                    self._mux(side.output.encode(None))
            try:
                self._out.close()  # writes the trailer (the moov atom of an mp4): can fail too
            except (av.error.FFmpegError, OSError) as e:
                raise _write_error(self.dst, e) from None
            self._out = None
            self._close_src()
            self._commit()
        except BaseException:
            self._cleanup()
            raise

    def _commit(self) -> None:
        """Move the finished file into place; never replace an existing file unless asked."""
        try:
            if self.overwrite:
                os.replace(self.tmp, self.dst)
                return
            try:
                os.link(self.tmp, self.dst)  # fails if dst appeared meanwhile: nothing is clobbered
                os.unlink(self.tmp)
            except FileExistsError:
                raise OutputError(
                    f"{self.dst} appeared while writing; pass --overwrite to replace it"
                ) from None
            except OSError:  # filesystems without hard links
                if self.dst.exists():
                    raise OutputError(
                        f"{self.dst} exists; pass --overwrite to replace it"
                    ) from None
                os.replace(self.tmp, self.dst)
        except OSError as e:
            raise _write_error(self.dst, e) from None

    def _close_src(self) -> None:
        if self._src is not None:
            self._src.close()
            self._src = None

    def _cleanup(self) -> None:
        if self._out is not None:
            try:
                self._out.close()
            except Exception:  # noqa: BLE001 - already failing; the temp file goes regardless
                pass
            self._out = None
        self._close_src()
        try:
            self.tmp.unlink(missing_ok=True)
        except OSError:
            pass


def _codec_id_name(encoder: str) -> str:
    """Containers list codecs by their generic name (h264); encoders have their own (libx264)."""
    return av.Codec(encoder, "w").canonical_name


def _reason(e: BaseException) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return msg.strip().splitlines()[0] if msg else type(e).__name__


def _write_error(dst: Path, e: BaseException) -> OutputError:
    if getattr(e, "errno", None) == errno.ENOSPC or "No space left" in str(e):
        return OutputError(f"disk full while writing {dst}")
    return OutputError(f"cannot write {dst}: {_reason(e)}")


__all__ = ["TEMP_MARKER", "VideoWriter", "choose_pix_fmt", "temp_path_for", "RANGE_NAMES"]
