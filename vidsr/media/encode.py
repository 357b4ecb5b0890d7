"""Write the upscaled video: encode RGB frames at their source pts, remux the other streams.

`VideoWriter` is a context manager over a temporary file beside the target. Audio and subtitle
packets are copied, not re-encoded, and interleaved by time with the video. On success the
temporary file is renamed into place; on any failure it is removed, so the target path never holds
a half-written file.
"""

from __future__ import annotations

import errno
import os
from contextlib import nullcontext
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.logging
import numpy as np
from av.video.reformatter import Interpolation

from ..config import EncodeConfig
from ..errors import OutputError
from .codecs import (
    CODECS,
    CONTAINERS,
    NVENC,
    NVENC_CRF,
    muxer_takes_codec,
    muxer_takes_stream,
    nvenc_refusal,
    nvenc_unavailable,
    reason_of,
)
from .probe import RANGE_NAMES, MasteringDisplay, VideoInfo
from .staging import TEMP_MARKER, WriterLock, temp_path_for

# SVT-AV1 prints a banner of some 20 lines at every encoder it opens (one per segment) unless its
# log level says otherwise; 1 keeps its errors. A value the user set wins.
os.environ.setdefault("SVT_LOG", "1")

_SWS = Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
# Container-level tags the muxer writes itself; copying them would describe the wrong file.
_MUXER_TAGS = {"major_brand", "minor_version", "compatible_brands", "encoder", "duration"}


def check_encode(encode: EncodeConfig, suffix: str, *, where: str = "") -> None:
    """Raise OutputError for a combination that cannot work, before any frame is decoded.

    `suffix` is the output extension (".mp4"); `where` prefixes the message (a preset file).
    """
    at = f"{where}: " if where else ""
    codec = encode.codec
    if codec not in CODECS:
        raise OutputError(f"{at}unknown codec {codec!r}; choose from {', '.join(CODECS)}")
    if codec not in av.codecs_available:
        raise OutputError(f"{at}encoder {codec!r} is not available in this FFmpeg build")
    spec = CODECS[codec]
    fmt = CONTAINERS.get(suffix.lower())
    if fmt is None:
        raise OutputError(
            f"{at}cannot write {suffix or 'extension-less'} files; use one of "
            f"{', '.join(sorted(CONTAINERS))}"
        )
    if not muxer_takes_codec(fmt, codec):
        fits = [ext for ext, f in CONTAINERS.items() if muxer_takes_codec(f, codec)]
        raise OutputError(f"{at}{suffix} files cannot hold {codec} video; use {' or '.join(fits)}")
    if encode.crf is not None:
        if spec.crf is None:
            raise OutputError(f"{at}{codec} takes no crf ({spec.note})")
        low, high = spec.crf
        if not low <= encode.crf <= high:
            raise OutputError(f"{at}crf {encode.crf} is out of range for {codec} ({low}..{high})")
    if encode.preset is not None and str(encode.preset) not in spec.presets:
        if not spec.presets:
            raise OutputError(f"{at}{codec} takes no encoder preset ({spec.note})")
        raise OutputError(
            f"{at}unknown encoder preset {encode.preset!r} for {codec}; "
            f"choose from {', '.join(spec.presets)}"
        )
    if encode.pix_fmt is not None:
        supported = [f.name for f in (av.Codec(codec, "w").video_formats or ())]
        if supported and encode.pix_fmt not in supported:
            raise OutputError(
                f"{at}encoder {codec} cannot write pixel format {encode.pix_fmt}; "
                f"choose from {', '.join(supported)}"
            )
    if codec in NVENC:
        reason = nvenc_unavailable(codec, encode.pix_fmt or "yuv420p")
        if reason is not None:
            raise OutputError(f"{at}{nvenc_refusal(codec, reason)}")


def check_output_path(dst: Path, *, overwrite: bool = False) -> None:
    """Raise OutputError when `dst` cannot take the result, before any frame is decoded."""
    dst = Path(dst)
    if dst.is_symlink() and not dst.exists():
        raise OutputError(
            f"{dst} is a symlink to {os.readlink(dst)}, which does not exist; "
            "remove the link or choose another output name"
        )
    if dst.is_dir():
        raise OutputError(f"{dst} is a folder; give an output file name")
    if dst.exists() and not overwrite:
        raise OutputError(f"{dst} exists; pass --overwrite to replace it")
    if not dst.parent.is_dir():
        raise OutputError(f"output folder does not exist: {dst.parent}")
    if not os.access(dst.parent, os.W_OK | os.X_OK):
        raise OutputError(f"output folder is not writable: {dst.parent}")
    if _disk_full(dst.parent):
        raise OutputError(f"disk full: no space left in {dst.parent} to write {dst.name}")


def _disk_full(folder: Path) -> bool:
    """No block left for us (what df shows). Filesystems that report no size at all pass."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_blocks > 0 and st.f_bavail == 0


def check_frame_size(plan: EncodePlan, info: VideoInfo) -> None:
    """Raise OutputError, in one line, when the encoder cannot take frames of the output size.

    The encoder itself is the judge: it is opened (no frame is sent) with the output's size, pixel
    format and options, and closed again. Cheap next to the upscale; at 8K output libvpx-vp9 and
    SVT-AV1 take a second or two and allocate their buffers for that time.
    """
    height, width = plan.size
    codec = plan.encode.codec
    options = dict(plan.options)
    if codec == "libx265":  # else x265 prints its banner and "encoded 0 frames" again
        options["x265-params"] = ":".join(
            filter(None, [options.get("x265-params"), "log-level=none"])
        )
    cc, logs = None, []
    try:
        cc = av.CodecContext.create(codec, "w")
        cc.width, cc.height, cc.pix_fmt = width, height, plan.pix_fmt
        cc.time_base = info.time_base
        cc.framerate = info.average_rate or Fraction(25)
        cc.thread_count = 1  # sizes are checked the same with one thread, and faster
        cc.options = options
        _open_logged(cc, logs)
    except (av.error.FFmpegError, ValueError) as e:
        # PyAV does not repeat a message it just logged; the error keeps the last one.
        said = [str(log[2]).strip() for log in (*logs, getattr(e, "log", None)) if log]
        reason = next((m.splitlines()[0] for m in said if m), reason_of(e))
        raise OutputError(
            f"{codec} cannot encode {width}x{height} frames (the {info.width}x"
            f"{info.height} source upscaled to that): {reason}"
        ) from None
    finally:
        del cc  # frees the encoder's buffers now, before the real one is opened


@dataclass(frozen=True)
class EncodePlan:
    """How one output is encoded, worked out and checked once (plan_encode): the encoder, the
    container (by suffix), the frame size, pixel format and options. The writers, the run's first
    line and the resume journal all read this; none works any of it out again."""

    encode: EncodeConfig
    suffix: str  # ".mkv": the container
    size: tuple[int, int]  # (height, width) of the frames written
    pix_fmt: str
    options: tuple[tuple[str, str], ...]  # the encoder's options, in order

    @property
    def codec(self) -> str:
        return self.encode.codec

    def option_dict(self) -> dict[str, str]:
        return dict(self.options)


def plan_encode(
    encode: EncodeConfig,
    info: VideoInfo,
    size: tuple[int, int],
    suffix: str,
    *,
    check_size: bool = True,
) -> EncodePlan:
    """The plan for writing `info`'s frames at `size` into a `suffix` file, or the one line that
    says why it cannot work: before any frame is decoded. `check_size=False` where an earlier
    plan of the same job already opened the encoder at this size (a Ray segment task)."""
    check_encode(encode, suffix)
    plan = EncodePlan(
        encode,
        suffix.lower(),
        size,
        choose_pix_fmt(encode.codec, info, encode.pix_fmt),
        tuple(encoder_options(encode, info, size[0]).items()),
    )
    if check_size:
        check_frame_size(plan, info)
    return plan


def _open_logged(cc: av.CodecContext, logs: list) -> None:
    """Open `cc`, collecting what FFmpeg logs as errors meanwhile (x264 says "invalid width x
    height (16388x64)" where the exception says only "Generic error in an external library").
    """
    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture(local=True) as captured:
            try:
                cc.open()
            finally:
                logs.extend(captured)
    finally:
        av.logging.set_level(level)


def encoder_options(encode: EncodeConfig, info: VideoInfo, height: int) -> dict[str, str]:
    """The encoder's options: defaults suited to the output `height`, then what was asked for.

    Bigger frames hide more quantisation per pixel and cost more per frame, so above 1080 lines
    the defaults take a slightly higher crf and a faster speed preset.
    """
    big = height > 1080
    codec = encode.codec
    options: dict[str, str] = {}
    crf = encode.crf
    preset = encode.preset
    if codec in ("libx264", "libx265"):
        base = 18 if codec == "libx264" else 20
        options["crf"] = str(crf if crf is not None else base + (2 if big else 0))
        options["preset"] = str(preset or ("veryfast" if big else "fast"))
        if codec == "libx265":  # else a 20-line banner for every segment's encoder
            options["x265-params"] = "log-level=error"
    elif codec == "libsvtav1":
        options["crf"] = str(crf if crf is not None else (32 if big else 28))
        options["preset"] = str(preset or ("10" if big else "8"))
    elif codec == "libvpx-vp9":
        # constant quality in libvpx needs the bitrate cap off (b:v 0), or crf is a ceiling.
        options["crf"] = str(crf if crf is not None else (32 if big else 30))
        options["b"] = "0"
        options["cpu-used"] = str(preset or ("5" if big else "4"))
        options.update({"deadline": "good", "row-mt": "1"})
    elif codec == "ffv1":
        # version 3 with per-slice CRCs, every frame a keyframe: the usual archival settings
        options.update({"level": "3", "slicecrc": "1", "g": "1"})
    elif codec == "prores_ks":
        options["profile"] = str(preset or "hq")
        options["vendor"] = "apl0"
    elif codec in NVENC:
        options.update(nvenc_options(codec, crf, preset, big=big))
    for key, value in hdr_options(codec, info).items():
        options[key] = f"{options[key]}:{value}" if key in options else value
    for key, value in encode.options.items():
        if key.endswith("-params") and key in options:
            options[key] = f"{options[key]}:{value}"
        else:
            options[key] = str(value)
    return options


def hdr_options(codec: str, info: VideoInfo) -> dict[str, str]:
    """HDR10 static metadata, written in-band where the encoder can (x264, x265, SVT-AV1)."""
    md, cll = info.mastering_display, info.content_light
    if md is None and cll is None:
        return {}
    if codec in ("libx264", "libx265"):
        params = []
        if md is not None:
            params.append(f"{'master-display' if codec == 'libx265' else 'mastering-display'}="
                          f"{_st2086(md, 50000, 10000)}")  # fmt: skip
        if cll is not None:
            params.append(f"{'max-cll' if codec == 'libx265' else 'cll'}={cll[0]},{cll[1]}")
        return {f"{codec[3:]}-params": ":".join(params)}
    if codec == "libsvtav1":
        params = []
        if md is not None:
            params.append(f"mastering-display={_st2086(md, None, None)}")
        if cll is not None:
            params.append(f"content-light={cll[0]},{cll[1]}")
        return {"svtav1-params": ":".join(params)}
    return {}


def _st2086(md: MasteringDisplay, xy_scale: int | None, lum_scale: int | None) -> str:
    """G(x,y)B(x,y)R(x,y)WP(x,y)L(max,min): integers in the given units, else decimals."""

    def n(v: float, scale: int | None) -> str:
        return str(round(v * scale)) if scale else f"{v:.4f}".rstrip("0").rstrip(".")

    def xy(p: tuple[float, float]) -> str:
        return f"({n(p[0], xy_scale)},{n(p[1], xy_scale)})"

    return (
        f"G{xy(md.green)}B{xy(md.blue)}R{xy(md.red)}WP{xy(md.white)}"
        f"L({n(md.max_luminance, lum_scale)},{n(md.min_luminance, lum_scale)})"
    )


def choose_pix_fmt(codec: str, info: VideoInfo, requested: str | None) -> str:
    """The encoder pixel format: asked for, else the source's, else 4:2:0 at >= the source's depth.

    A source deeper than 8 bits never comes out at 8 bits unless that is asked for.
    """
    supported = [f.name for f in (av.Codec(codec, "w").video_formats or ())]
    if requested:
        if supported and requested not in supported:
            raise OutputError(f"encoder {codec} cannot write pixel format {requested}")
        return requested
    source = info.pix_fmt.replace("yuvj", "yuv")  # yuvj* are deprecated aliases for full range
    candidates = [source]
    if info.bit_depth > 8:
        chroma = "422" if "422" in source or source.startswith(("nv16", "nv20", "p2")) else "420"
        if "444" in source or source.startswith(("gbr", "rgb", "p4")):
            chroma = "444"
        ten = [f"yuv{chroma}p10le", "yuv420p10le", "yuv422p10le", "yuv444p10le"]
        # NVENC takes 10 bits only semi-planar (p010le): right after its planar twin, so the
        # software encoders, which list the planar one, keep it.
        candidates += [f for p in ten for f in (p, _SEMI_PLANAR.get(p)) if f]
        candidates += [f"yuv{chroma}p12le", "yuv444p12le", "yuv444p16le", "gbrp10le"]
    candidates += ["yuv420p", "yuv444p", "yuv422p10le", "yuv444p10le", "rgb24", "gbrp"]
    for fmt in candidates:
        if not supported or fmt in supported:
            return fmt
    return supported[0]


_SEMI_PLANAR = {"yuv420p10le": "p010le", "yuv422p10le": "p210le"}


# -- NVENC ---------------------------------------------------------------------------------------
def nvenc_options(codec: str, crf: int | None, preset: str | None, *, big: bool) -> dict[str, str]:
    """--crf as NVENC's constant quality: VBR rate control steered by cq alone (no bitrate)."""
    cq = crf if crf is not None else NVENC_CRF[codec] + (2 if big else 0)
    return {"rc": "vbr", "cq": str(cq), "b": "0", "preset": str(preset or ("p4" if big else "p5"))}


def resolve_codec(codec: str, suffix: str | None = None) -> tuple[str, str]:
    """--codec: a name passes through; "auto" is hevc_nvenc where it opens, else libx264.

    Returns (codec, note); the note says which "auto" took and why (empty for a plain name).
    `suffix` (".webm"): hevc_nvenc is taken only where that container can hold HEVC.
    """
    if codec != "auto":
        return codec, ""
    fits = suffix is None or (
        suffix.lower() in CONTAINERS and muxer_takes_codec(CONTAINERS[suffix.lower()], "hevc_nvenc")
    )
    reason = nvenc_unavailable("hevc_nvenc") if fits else f"{suffix} cannot hold HEVC"
    if reason is None:
        return "hevc_nvenc", "--codec auto: hevc_nvenc (this machine's NVIDIA encoder)"
    return "libx264", f"--codec auto: libx264 (hevc_nvenc cannot be used here: {reason})"


def nvenc_pix_fmt(cfg: EncodeConfig, pix_fmt: str, width: int, height: int, opts, warn) -> str:
    """The chosen format if the GPU encodes it at this size, else 8-bit 4:2:0 (unless asked for).

    10-bit support differs by chip and codec (H.264 10-bit only on the newest): ask the encoder.
    """
    reason = nvenc_unavailable(cfg.codec, pix_fmt, width, height, opts)
    if reason is None:
        return pix_fmt
    if cfg.pix_fmt is None and pix_fmt != "yuv420p":
        if nvenc_unavailable(cfg.codec, "yuv420p", width, height, opts) is None:
            warn(f"{cfg.codec} on this GPU cannot encode {pix_fmt} ({reason}): written as yuv420p")
            return "yuv420p"
    raise OutputError(
        f"{cfg.codec} cannot encode {pix_fmt} at {width}x{height} here ({reason}); "
        "use libx265 (10-bit) or libx264"
    )


@dataclass
class _Side:
    """A non-video source stream and how it reaches the output."""

    source: av.stream.Stream
    output: av.stream.Stream
    decoder: av.codec.CodecContext | None = None  # set when the stream is transcoded
    resampler: av.AudioResampler | None = None


@dataclass
class WriteStats:
    frames: int = 0


class VideoWriter:
    """`with VideoWriter(info, dst, plan) as w: w.write(rgb, pts)`; renamed on success.

    `plan`: the EncodePlan of this output, or an EncodeConfig to plan it from here (frames of the
    source's size times `scale`, or `size`)."""

    def __init__(
        self,
        info: VideoInfo,
        dst: Path,
        plan: EncodePlan | EncodeConfig,
        *,
        scale: int = 4,
        size: tuple[int, int] | None = None,
        overwrite: bool = False,
        warn=None,
    ):
        self.info = info
        self.dst = Path(dst)
        self.tmp = temp_path_for(self.dst)
        if not isinstance(plan, EncodePlan):
            size = size or (info.height * scale, info.width * scale)
            plan = plan_encode(plan, info, size, self.dst.suffix)
        self.plan = plan
        self.size = plan.size  # (height, width) of the frames written
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
        self._lock: WriterLock | None = None
        self.clock = _untimed  # vidsr.upscale.profile.StageClock when a run is profiled

    # -- setup ---------------------------------------------------------------------------------
    def __enter__(self) -> VideoWriter:
        # What can be known to fail was checked by the plan; the path is checked again now,
        # before the temporary file exists (a file may have appeared at the target meanwhile).
        check_output_path(self.dst, overwrite=self.overwrite)
        try:
            self._lock = WriterLock(self.tmp)  # a later run must not take us for a dead writer
            self._out = open_output(self.tmp)
        except ValueError:
            self._cleanup()
            raise OutputError(
                f"unknown container for {self.dst.name}: use .mp4, .mkv, .mov or .webm"
            ) from None
        except (av.error.FFmpegError, OSError) as e:
            self._cleanup()
            raise OutputError(f"cannot write {self.dst}: {reason_of(e)}") from None
        try:
            self._open_video()
            self._open_sides()
            meta = {k: v for k, v in self.info.metadata.items() if k not in _MUXER_TAGS}
            self._out.metadata.update(meta)
            try:
                self._out.start_encoding()  # opens the encoders and writes the header
            except (av.error.FFmpegError, OSError) as e:
                raise write_error(self.dst, e) from None
        except BaseException:
            self._cleanup()
            raise
        return self

    def _open_video(self) -> None:
        info, plan, cfg = self.info, self.plan, self.plan.encode
        rate = info.average_rate or Fraction(25)
        stream = self._out.add_stream(cfg.codec, rate=rate)
        stream.height, stream.width = self.size
        stream.pix_fmt = plan.pix_fmt
        depth = max(c.bits for c in av.VideoFormat(stream.pix_fmt).components)
        if depth < info.bit_depth and cfg.pix_fmt is None:
            self._warn(
                f"{cfg.codec} in this FFmpeg build cannot write {info.bit_depth}-bit video: "
                f"written as {stream.pix_fmt}; use libx264, libx265 or libsvtav1 to keep the depth"
            )
        stream.time_base = info.time_base
        cc = stream.codec_context
        cc.time_base = info.time_base  # frames keep their source pts, so VFR survives exactly
        # Tags describe what the pixels are: the source's, with the matrix and range we actually
        # used when the source left them unspecified (players guess by size, and 4x changes it).
        cc.color_primaries = info.color_primaries
        cc.color_trc = info.color_trc
        cc.colorspace = info.matrix
        cc.color_range = 2 if info.full_range else 1
        cc.field_order = 1  # progressive: frames through a network are, whatever the source was
        stream.options = plan.option_dict()
        if cfg.codec in NVENC:
            stream.pix_fmt = nvenc_pix_fmt(
                cfg, stream.pix_fmt, stream.width, stream.height, stream.options, self._warn
            )
        if (info.mastering_display or info.content_light) and not hdr_options(cfg.codec, info):
            self._warn(f"{cfg.codec} cannot carry the source's HDR mastering/light-level metadata")
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
        fmt = self._out.format.name.split(",")[0]
        video = self._src.streams.video[0].index
        for s in self._src.streams:
            name = s.codec_context.name if s.codec_context else "?"
            if s.type == "video":
                if s.index != video:
                    self._warn(
                        f"stream #{s.index} (a second video stream, {name}) is dropped: "
                        f"only stream #{video} is upscaled"
                    )
                continue
            if s.type not in ("audio", "subtitle", "attachment"):
                self._warn(f"stream #{s.index} ({s.type}, {name}) is not copied")
                continue
            if muxer_takes_stream(fmt, s):
                out = self._out.add_stream_from_template(s)
                out.metadata.update(s.metadata)
                self._sides[s.index] = _Side(s, out)
            elif s.type == "audio":
                # AAC where the container takes it; WebM takes only Opus/Vorbis (Opus: 48 kHz).
                aac = "aac" in self._out.supported_codecs
                encoder, label = ("aac", "AAC") if aac else ("libopus", "Opus")
                rate = s.codec_context.sample_rate if aac else 48000
                self._warn(
                    f"{self.dst.suffix} cannot hold {name} audio: "
                    f"stream #{s.index} is re-encoded to {label}"
                )
                out = self._out.add_stream(encoder, rate=rate)
                out.layout = s.codec_context.layout
                out.metadata.update(s.metadata)
                resampler = av.AudioResampler(
                    format="fltp" if aac else "flt", layout=s.codec_context.layout, rate=rate
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
        with self.clock("colour conversion"):
            frame = av.VideoFrame.from_ndarray(rgb, format=self._format)
            frame = frame.reformat(
                format=self._video.pix_fmt,
                dst_colorspace=self.info.matrix,
                dst_color_range=2 if self.info.full_range else 1,
                interpolation=_SWS,
            )
        frame.pts = pts
        frame.time_base = self.info.time_base
        with self.clock("mux"):
            self._mux_side_until(float(pts * self.info.time_base))
        try:
            with self.clock("encode"):
                packets = self._video.encode(frame)
        except (av.error.FFmpegError, OSError) as e:
            raise write_error(self.dst, e) from None
        with self.clock("mux"):
            self._mux(packets)
        self.stats.frames += 1

    def _mux(self, packets) -> None:
        try:
            self._out.mux(packets)
        except (av.error.FFmpegError, OSError) as e:
            raise write_error(self.dst, e) from None

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

    # -- finishing -----------------------------------------------------------------------------
    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._cleanup()
            return
        try:
            self._flush_video()
            self._mux_side_until(None)
            for side in self._sides.values():
                if side.decoder is not None:
                    self._mux(side.output.encode(None))
            try:
                self._out.close()  # writes the trailer (the moov atom of an mp4): can fail too
            except (av.error.FFmpegError, OSError) as e:
                raise write_error(self.dst, e) from None
            self._out = None
            self._close_src()
            self._commit()
            self._release()
        except BaseException:
            self._cleanup()
            raise

    def _flush_video(self) -> None:
        """The encoder's delayed frames (a writer of copied packets has none)."""
        self._mux(self._video.encode(None))

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
            raise write_error(self.dst, e) from None

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
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _untimed(name: str):
    return nullcontext()


def open_output(path: Path) -> av.container.OutputContainer:
    """An output container for `path` (format by its extension) that keeps every timestamp.

    Matroska cannot say that an AAC track starts with priming samples (PyAV cannot set the
    CodecDelay that would), so FFmpeg would move every stream later by the priming (21 ms) to
    keep the audio's first packet at or after 0; with the shift off the frames keep the source's
    pts and that one packet starts before 0, as it does in the source (FFmpeg reads it back so).
    """
    fmt = CONTAINERS.get(Path(path).suffix.lower())
    options = {"avoid_negative_ts": "disabled"} if fmt in ("matroska", "webm") else {}
    return av.open(str(path), "w", options=options)


def write_error(dst: Path, e: BaseException) -> OutputError:
    if getattr(e, "errno", None) == errno.ENOSPC or "No space left" in str(e):
        return OutputError(f"disk full while writing {dst}")
    return OutputError(f"cannot write {dst}: {reason_of(e)}")


__all__ = [
    "RANGE_NAMES",
    "TEMP_MARKER",
    "VideoWriter",
    "check_encode",
    "check_frame_size",
    "check_output_path",
    "EncodePlan",
    "choose_pix_fmt",
    "encoder_options",
    "plan_encode",
    "nvenc_options",
    "resolve_codec",
    "temp_path_for",
]
