"""What vidsr can encode and where: the encoders it offers (quality scale, speed presets), the
containers it writes, and which container takes which codec or stream, asked of FFmpeg's
muxers themselves. A table, no configuration: vidsr.config parses --codec and --container
against it, vidsr.media.encode builds an output from it.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from fractions import Fraction

import av
import av.logging

# The containers we write, by extension, and the FFmpeg muxer behind each.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mkv": "matroska", ".mov": "mov", ".webm": "webm"}


_X26X_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
    "placebo",
)  # fmt: skip


# NVIDIA's hardware encoders: p1 (fastest) .. p7 (best). They open only where the driver and an
# NVENC unit exist (consumer and workstation cards; not the H100/H200 compute chips).
NVENC = ("h264_nvenc", "hevc_nvenc", "av1_nvenc")


_NVENC_PRESETS = tuple(f"p{i}" for i in range(1, 8))


# Default cq: a first guess near x264 crf 18 / x265 crf 20, not yet compared on an NVENC card.
NVENC_CRF = {"h264_nvenc": 21, "hevc_nvenc": 23, "av1_nvenc": 30}


@dataclass(frozen=True)
class CodecSpec:
    """What vidsr knows about one encoder: its quality scale and its speed-preset knob."""

    crf: tuple[int, int] | None  # the valid crf range; None: the codec has no crf
    presets: tuple[str, ...]  # valid --encoder-preset values
    preset_option: str  # the encoder option --encoder-preset sets
    note: str = ""


CODECS: dict[str, CodecSpec] = {
    "libx264": CodecSpec((0, 51), _X26X_PRESETS, "preset"),
    "libx265": CodecSpec((0, 51), _X26X_PRESETS, "preset"),
    "libsvtav1": CodecSpec((0, 63), tuple(str(i) for i in range(14)), "preset"),
    "libvpx-vp9": CodecSpec((0, 63), tuple(str(i) for i in range(9)), "cpu-used"),
    "ffv1": CodecSpec(None, (), "", "lossless: no --crf and no --encoder-preset"),
    "prores_ks": CodecSpec(
        None,
        ("proxy", "lt", "standard", "hq", "4444", "4444xq"),
        "profile",
        "quality is the profile: --encoder-preset proxy|lt|standard|hq|4444|4444xq",
    ),
    # cq 0 means "automatic" to NVENC, not lossless: the quality scale starts at 1.
    "h264_nvenc": CodecSpec((1, 51), _NVENC_PRESETS, "preset", "NVIDIA GPU encoder"),
    "hevc_nvenc": CodecSpec((1, 51), _NVENC_PRESETS, "preset", "NVIDIA GPU encoder"),
    "av1_nvenc": CodecSpec((1, 63), _NVENC_PRESETS, "preset", "NVIDIA GPU encoder"),
}


def _muxer_codecs(fmt: str) -> set[str]:
    with av.open(io.BytesIO(), "w", format=fmt) as c:
        return set(c.supported_codecs)


@functools.cache
def muxer_takes_codec(fmt: str, encoder: str) -> bool:
    """Whether muxer `fmt` writes a header for `encoder`'s video: the muxer is the judge, since
    its list of codecs (supported_codecs) holds some only one of its modes takes (VP9 and AV1
    are in mov's list but only MP4 writes them)."""
    if _codec_id_name(encoder) not in _muxer_codecs(fmt):
        return False
    if encoder in NVENC:  # no NVENC to open here: the list is all there is to go by
        return True
    codec = av.Codec(encoder, "w")
    try:
        with av.open(io.BytesIO(), "w", format=fmt) as c:
            stream = c.add_stream(encoder, rate=25)
            stream.width, stream.height = 64, 64
            stream.pix_fmt = codec.video_formats[0].name if codec.video_formats else "yuv420p"
            if encoder == "libx265":
                stream.options = {"x265-params": "log-level=none"}
            c.start_encoding()
    except (av.error.FFmpegError, ValueError):
        return False
    return True


def muxer_takes_stream(fmt: str, stream: av.stream.Stream) -> bool:
    """Whether muxer `fmt` writes a header for a copy of `stream` (an audio or subtitle track)."""
    try:
        with av.open(io.BytesIO(), "w", format=fmt) as c:
            c.add_stream_from_template(stream)
            c.start_encoding()
    except (av.error.FFmpegError, ValueError):
        return False
    return True


def nvenc_unavailable(
    codec: str,
    pix_fmt: str = "yuv420p",
    width: int = 256,
    height: int = 256,
    options: dict[str, str] | None = None,
) -> str | None:
    """None where this encoder opens here with these settings; else FFmpeg's reason, one line.

    Listed in PyAV's FFmpeg is not enough: the encoder loads the driver (libcuda,
    libnvidia-encode) and asks the GPU for an encode session when it opens, so only opening one
    answers. Answers are cached per setting: a session costs the GPU tens of milliseconds.
    """
    key = (codec, pix_fmt, width, height, tuple(sorted((options or {}).items())))
    return _nvenc_probe(key)


@functools.cache
def _nvenc_probe(key: tuple) -> str | None:
    codec, pix_fmt, width, height, options = key
    if codec not in av.codecs_available:
        return "not in this FFmpeg build"
    previous = av.logging.get_level()
    # The reason ("Cannot load libcuda.so.1") is a log line: captured, so it is not printed too.
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture():
            cc = av.CodecContext.create(codec, "w")
            cc.width, cc.height, cc.pix_fmt = width, height, pix_fmt
            cc.time_base = Fraction(1, 25)
            cc.options = dict(options)
            cc.open()  # the session is released with the context, at the end of this call
        return None
    except (av.error.FFmpegError, OSError, ValueError) as e:
        log = getattr(e, "log", None)
        text = log[2] if log and len(log) > 2 and log[2] else reason_of(e)
        return " ".join(str(text).split()) or type(e).__name__
    finally:
        av.logging.set_level(previous)


def nvenc_refusal(codec: str, reason: str) -> str:
    return (
        f"encoder {codec} cannot open here ({reason}): it needs an NVIDIA GPU with NVENC "
        "and its driver (H100/H200 have none); use libx264 or libx265"
    )


def _codec_id_name(encoder: str) -> str:
    """Containers list codecs by their generic name (h264); encoders have their own (libx264)."""
    return av.Codec(encoder, "w").canonical_name


def reason_of(e: BaseException) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return msg.strip().splitlines()[0] if msg else type(e).__name__


__all__ = [
    "CODECS",
    "CONTAINERS",
    "NVENC",
    "NVENC_CRF",
    "CodecSpec",
    "muxer_takes_codec",
    "muxer_takes_stream",
    "nvenc_refusal",
    "nvenc_unavailable",
    "reason_of",
]
