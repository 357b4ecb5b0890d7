"""Test media made with PyAV: small clips with known pts, audio, subtitles and colour tags."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

BT709 = 1


def pattern(i: int, w: int, h: int) -> np.ndarray:
    """A moving colour gradient with a few flat patches: (h, w, 3) uint8."""
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 255 // max(1, w - 1) + i * 7) % 256
    g = (y * 255 // max(1, h - 1) + i * 3) % 256
    b = ((x + y) * 255 // max(1, w + h - 2) + 128) % 256
    img = np.stack([r, g, b], axis=-1).astype(np.uint8)
    img[: h // 4, : w // 4] = (200, 40, 40)
    return img


def vfr_pts(frames: int) -> list[int]:
    """Irregular timestamps in milliseconds: 40 ms steps with some 20 ms and 80 ms gaps."""
    pts, t = [], 0
    for i in range(frames):
        pts.append(t)
        t += (40, 20, 80, 40, 33)[i % 5]
    return pts


def make_clip(
    path: Path,
    *,
    width: int = 64,
    height: int = 48,
    frames: int = 24,
    vfr: bool = True,
    audio: bool = True,
    audio_channels: int = 2,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    colorspace: int | None = BT709,
    color_primaries: int | None = BT709,
    color_trc: int | None = BT709,
    color_range: int = 1,
) -> dict:
    """Write a clip and return what was put in it (pts in ms, audio packet count, ...)."""
    tb = Fraction(1, 1000)
    pts_list = vfr_pts(frames) if vfr else [i * 40 for i in range(frames)]
    with av.open(str(path), "w") as out:
        v = out.add_stream(codec, rate=25)
        v.width, v.height, v.pix_fmt = width, height, pix_fmt
        v.time_base = tb
        v.codec_context.time_base = tb
        if colorspace is not None:
            v.codec_context.colorspace = colorspace
        if color_primaries is not None:
            v.codec_context.color_primaries = color_primaries
        if color_trc is not None:
            v.codec_context.color_trc = color_trc
        v.codec_context.color_range = color_range
        if codec == "libx264":
            v.options = {"preset": "ultrafast", "crf": "12"}
        a = None
        if audio:
            a = out.add_stream("aac", rate=48000)
            a.layout = {1: "mono", 2: "stereo", 6: "5.1"}[audio_channels]
        out.start_encoding()
        for i, t in enumerate(pts_list):
            frame = av.VideoFrame.from_ndarray(pattern(i, width, height), format="rgb24")
            frame = frame.reformat(
                format=pix_fmt, dst_colorspace=colorspace or 6, dst_color_range=color_range or 1
            )
            frame.pts, frame.time_base = t, tb
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
        if a is not None:
            duration = (pts_list[-1] + 40) / 1000
            samples = int(duration * 48000)
            t = np.arange(samples) / 48000
            tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            data = np.tile(tone, (audio_channels, 1))
            for start in range(0, samples, 1024):
                chunk = np.ascontiguousarray(data[:, start : start + 1024])
                af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=a.layout.name)
                af.sample_rate, af.pts = 48000, start
                out.mux(a.encode(af))
            out.mux(a.encode(None))
    return {"pts_ms": pts_list, "audio_packets": count_packets(path, "audio") if audio else 0}


def count_packets(path: Path, kind: str) -> int:
    with av.open(str(path)) as c:
        streams = [s for s in c.streams if s.type == kind]
        if not streams:
            return 0
        return sum(1 for p in c.demux(*streams) if p.size)


def read_video(path: Path) -> dict:
    """Size, pts in ms, frame count and colour tags of the first video stream."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        cc = v.codec_context
        times = [float(f.pts * f.time_base) * 1000 for f in c.decode(v)]
        return {
            "width": cc.width,
            "height": cc.height,
            "pix_fmt": cc.pix_fmt,
            "pts_ms": times,
            "frames": len(times),
            "colorspace": int(cc.colorspace),
            "color_primaries": int(cc.color_primaries),
            "color_trc": int(cc.color_trc),
            "color_range": int(cc.color_range),
        }


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def corrupt_packets(src: Path, dst: Path, indices: tuple[int, ...]) -> None:
    """Copy `src` to `dst` with the payload of some video packets overwritten by garbage."""
    with av.open(str(src)) as c:
        packets = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    data = bytearray(src.read_bytes())
    for k in indices:
        pos, size = packets[k]
        data[pos : pos + size] = bytes((i * 37 + 11) & 0xFF for i in range(size))
    dst.write_bytes(bytes(data))


def make_subtitled_mkv(path: Path, frames: int = 10) -> list[bytes]:
    """An mkv with H.264 video and an SRT subtitle stream; returns the subtitle payloads."""
    lines = []
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        s = out.add_mux_stream("subrip")
        s.metadata["language"] = "eng"
        out.start_encoding()
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(pattern(i, 64, 48), format="rgb24")
            f.pts = i
            out.mux(v.encode(f))
            if i % 3 == 0:
                text = f"line {i}".encode()
                p = av.Packet(text)
                p.stream, p.time_base = s, Fraction(1, 1000)
                p.pts = p.dts = i * 40
                p.duration = 40
                out.mux(p)
                lines.append(text)
        out.mux(v.encode(None))
    return lines
