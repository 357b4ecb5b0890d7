"""Test media made with PyAV: small clips with known pts, audio, subtitles and colour tags."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import av.filter
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


def make_subtitled_mkv(path: Path, frames: int = 10, show: int = 40) -> list[bytes]:
    """An mkv with H.264 video and an SRT subtitle stream, a line every third frame showing for
    `show` ms; returns the subtitle payloads."""
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
                p.duration = show
                out.mux(p)
                lines.append(text)
        out.mux(v.encode(None))
    return lines


def numbered(i: int, w: int = 64, h: int = 48) -> np.ndarray:
    """A picture that shows its frame number `i` (< 256) as eight black/white bars."""
    img = np.zeros((h, w, 3), np.uint8)
    bar = w // 8
    for bit in range(8):
        if (i >> bit) & 1:
            img[:, bit * bar : (bit + 1) * bar] = 255
    img[:, :, 1] //= 2  # a little colour, so the chroma planes carry something too
    return img


def number_of(rgb: np.ndarray) -> int:
    """The frame number a `numbered` picture shows, read at the bars' centres (any scale)."""
    h, w = rgb.shape[:2]
    bar = w / 8
    luma = rgb[h // 4 : 3 * h // 4].mean(axis=(0, 2))
    return sum(1 << b for b in range(8) if luma[int((b + 0.5) * bar)] > 100)


def decoded_numbers(path: Path) -> tuple[list[int], list[int]]:
    """The frame numbers of every decoded picture, in decoder order, and their pts."""
    with av.open(str(path)) as c:
        frames = list(c.decode(c.streams.video[0]))
    return [number_of(f.to_ndarray(format="rgb24")) for f in frames], [f.pts for f in frames]


def _vop_type(data: bytes) -> str:
    i = data.find(b"\x00\x00\x01\xb6")  # the VOP start code; the next two bits are its type
    return "IPBS"[data[i + 4] >> 6]


def _n_vop(time_bits: int) -> bytes:
    """A not-coded VOP: the placeholder chunk DivX/XviD write where a packed B-frame was."""
    bits = "01" + "0" + "1" + "0" * time_bits + "1" + "0"  # P, time base, marker, time, coded=0
    bits += "0" + "1" * ((8 - (len(bits) + 1) % 8) % 8)  # stuffing to the byte boundary
    return b"\x00\x00\x01\xb6" + int(bits, 2).to_bytes(len(bits) // 8, "big")


def make_packed_bframes_avi(
    path: Path, frames: int = 30, bframes: int = 2, audio: str | None = None
) -> None:
    """An MPEG-4 Part 2 AVI with "packed B-frames", the way DivX 5 and XviD write them.

    AVI keeps one timestamp per chunk, so those encoders put each P-frame together with the first
    B-frame shown before it in one chunk, the other B-frames in their own, and a not-coded VOP
    where the P-frame's time comes; a "DivX...p" user-data string tells decoders. FFmpeg's mpeg4
    encoder writes B-frames unpacked; this packs its output the same way.
    """
    cc = av.CodecContext.create("mpeg4", "w")
    cc.width, cc.height, cc.pix_fmt = 64, 48, "yuv420p"
    cc.time_base, cc.framerate = Fraction(1, 25), Fraction(25)
    cc.max_b_frames, cc.bit_rate = bframes, 2_000_000
    cc.open()
    packets: list[bytes] = []
    for i in range(frames):
        f = av.VideoFrame.from_ndarray(numbered(i), format="rgb24").reformat(format="yuv420p")
        f.pts = i
        packets += [bytes(p) for p in cc.encode(f)]
    packets += [bytes(p) for p in cc.encode(None)]
    first = packets[0]
    vop = first.find(b"\x00\x00\x01\xb6")
    packets[0] = first[:vop] + b"\x00\x00\x01\xb2DivX503b1393p" + first[vop:]
    chunks, j = [], 0
    while j < len(packets):
        ref, j = packets[j], j + 1
        bs = []
        while j < len(packets) and _vop_type(packets[j]) == "B":
            bs.append(packets[j])
            j += 1
        chunks += [ref + bs[0], *bs[1:], _n_vop(5)] if bs else [ref]  # 25 fps: 5-bit times
    assert len(chunks) == frames
    with av.open(str(path), "w", format="avi") as out:
        v = out.add_stream("mpeg4", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.time_base = Fraction(1, 25)
        a = out.add_stream(AUDIO_ENCODERS[audio], rate=44100) if audio else None
        if a is not None:
            a.layout = "stereo"
        out.start_encoding()
        for k, data in enumerate(chunks):
            p = av.Packet(data)
            p.stream, p.time_base, p.pts, p.dts = v, Fraction(1, 25), k, k
            p.is_keyframe = _vop_type(data) == "I"
            out.mux(p)
        if a is not None:
            out.mux(_tone(44100, frames / 25, a))


# -- sources for the container x codec matrix ---------------------------------------------------

AUDIO_ENCODERS = {"aac": "aac", "ac3": "ac3", "mp3": "libmp3lame", "opus": "libopus",
                  "pcm": "pcm_s16le"}  # fmt: skip


def _tone(rate: int, seconds: float, stream) -> list:
    """The packets of a 440 Hz stereo tone `seconds` long, encoded by `stream`."""
    cc = stream.codec_context
    resampler = av.AudioResampler(format=cc.codec.audio_formats[0].name, layout="stereo",
                                  rate=rate, frame_size=cc.frame_size or 1024)  # fmt: skip
    samples = int(seconds * rate)
    tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / rate)).astype(np.float32)
    frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
    frame.sample_rate, frame.pts = rate, 0
    packets = []
    for f in [*resampler.resample(frame), *resampler.resample(None)]:
        packets += stream.encode(f)
    return packets + list(stream.encode(None))


def make_source(
    path: Path,
    *,
    frames: int = 30,
    codec: str = "libx264",
    bframes: int = 0,
    open_gop: bool = False,
    vfr: bool = False,
    audio: str | None = "aac",
    subtitles: bool = False,
    width: int = 64,
    height: int = 48,
) -> dict:
    """A numbered clip (see `numbered`) for the matrix: H.264 with or without B-frames and open
    GOPs, CFR (40 ms) or VFR (vfr_pts), any of the audio kinds of AUDIO_ENCODERS, an SRT track.

    Returns the pts of its frames in ms, in display order.
    """
    tb = Fraction(1, 1000)
    pts_list = vfr_pts(frames) if vfr else [i * 40 for i in range(frames)]
    with av.open(str(path), "w") as out:
        v = out.add_stream(codec, rate=25)
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        v.time_base = v.codec_context.time_base = tb
        if codec == "libx264":
            params = f"bframes={bframes}:keyint=12:min-keyint=12:scenecut=0"
            if open_gop:
                params += ":open-gop=1"
            v.options = {"preset": "fast", "crf": "10", "x264-params": params}
        else:
            v.codec_context.max_b_frames = bframes
            v.codec_context.gop_size = 12
            v.codec_context.bit_rate = 2_000_000
        a = None
        if audio:
            rate = 48000 if audio in ("opus", "aac", "pcm") else 44100
            a = out.add_stream(AUDIO_ENCODERS[audio], rate=rate)
            a.layout = "stereo"
        s = out.add_mux_stream("subrip") if subtitles else None
        out.start_encoding()
        for i, t in enumerate(pts_list):
            frame = av.VideoFrame.from_ndarray(numbered(i, width, height), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = t, tb
            out.mux(v.encode(frame))
            if s is not None and i % 8 == 0:
                p = av.Packet(f"line {i}".encode())
                p.stream, p.time_base = s, tb
                p.pts = p.dts = t
                p.duration = 200
                out.mux(p)
        out.mux(v.encode(None))
        if a is not None:
            out.mux(_tone(a.codec_context.sample_rate, (pts_list[-1] + 40) / 1000, a))
    return {"pts_ms": pts_list}


# -- old footage: interlaced, telecined, letterboxed ---------------------------------------------


def moving_bar(t: int, w: int = 128, h: int = 96, number: int | None = None) -> np.ndarray:
    """A scene at instant `t`: a bright bar moving 3 pixels a step over grey, a red stripe, and
    a number (numbered: `t` unless given) in the bottom half."""
    img = np.full((h, w, 3), 40, np.uint8)
    x = 4 + (3 * t) % (w - 20)
    img[: h // 2, x : x + 12] = (230, 230, 230)
    img[h // 3 : h // 3 + 6, :] = (200, 60, 60)
    img[h // 2 :] = numbered((t if number is None else number) % 256, w, h - h // 2)
    return img


def woven(i: int, order: str, w: int = 128, h: int = 96) -> np.ndarray:
    """Frame `i` of interlaced video: the fields of instants 2i and 2i+1 (the bar moves between
    them; both show the number i), the first in time on the top lines for tff and on the bottom
    lines for bff."""
    first, second = moving_bar(2 * i, w, h, number=i), moving_bar(2 * i + 1, w, h, number=i)
    out = np.empty_like(first)
    top, bottom = (first, second) if order == "tff" else (second, first)
    out[0::2], out[1::2] = top[0::2], bottom[1::2]
    return out


def _field_graph(w: int, h: int, tb: Fraction, rate: Fraction, filters: list[tuple[str, str]]):
    g = av.filter.Graph()
    src = g.add(
        "buffer",
        f"video_size={w}x{h}:pix_fmt=yuv420p:time_base={tb.numerator}/"
        f"{tb.denominator}:frame_rate={rate.numerator}/{rate.denominator}:pixel_aspect=1/1",
    )
    nodes = [src, *[g.add(n, a) for n, a in filters], g.add("buffersink")]
    for a, b in zip(nodes, nodes[1:], strict=False):
        a.link_to(b)
    g.configure()
    return g


def _pull(g) -> list:
    out = []
    while True:
        try:
            out.append(g.pull())
        except (av.BlockingIOError, av.EOFError):
            return out


def _interlaced_stream(out, codec: str, order: str, rate: Fraction, w: int, h: int):
    s = out.add_stream(codec, rate=rate)
    s.width, s.height, s.pix_fmt = w, h, "yuv420p"
    if codec == "mpeg2video":
        s.codec_context.bit_rate = 8_000_000
        flags = av.codec.context.Flags
        s.codec_context.flags |= flags.interlaced_dct | flags.interlaced_me
    else:
        s.options = {"x264-params": f"interlaced=1:{order}=1", "crf": "12", "preset": "fast"}
    return s


def make_interlaced(
    path: Path, *, codec: str = "mpeg2video", order: str = "tff", frames: int = 50,
    audio: bool = False,
) -> None:  # fmt: skip
    """25i video with real field motion (woven), flagged `order` (setfield), MPEG-2 or x264."""
    w, h, tb, rate = 128, 96, Fraction(1, 25), Fraction(25)
    g = _field_graph(w, h, tb, rate, [("setfield", order)])
    with av.open(str(path), "w") as out:
        s = _interlaced_stream(out, codec, order, rate, w, h)
        a = out.add_stream("aac", rate=48000) if audio else None
        if a is not None:
            a.layout = "stereo"
        out.start_encoding()
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(woven(i, order, w, h), format="rgb24")
            f = f.reformat(format="yuv420p")
            f.pts, f.time_base = i, tb
            g.push(f)
            for flagged in _pull(g):
                out.mux(s.encode(flagged))
        out.mux(s.encode(None))
        if a is not None:
            out.mux(_tone(48000, frames / 25, a))


def make_telecined(path: Path, *, film_frames: int = 48) -> list[np.ndarray]:
    """24p film (moving_bar at each frame) telecined 3:2 (FFmpeg's telecine) to 29.97i and
    coded as MPEG-2 in MPEG-TS; returns the film's frames."""
    w, h = 128, 96
    film_tb, film_rate = Fraction(1001, 24000), Fraction(24000, 1001)
    g = _field_graph(w, h, film_tb, film_rate, [("telecine", "first_field=top:pattern=23")])
    film = [moving_bar(i, w, h) for i in range(film_frames)]
    video_tb = Fraction(1001, 30000)
    with av.open(str(path), "w") as out:
        s = _interlaced_stream(out, "mpeg2video", "tff", Fraction(30000, 1001), w, h)
        n = 0

        def drain() -> None:
            nonlocal n
            for f in _pull(g):
                f.pts, f.time_base = n, video_tb
                n += 1
                out.mux(s.encode(f))

        for i, img in enumerate(film):
            f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            f.pts, f.time_base = i, film_tb
            g.push(f)
            drain()
        g.push(None)
        drain()
        out.mux(s.encode(None))
    return film


def make_letterboxed(path: Path, *, frames: int = 12, bars: int = 16) -> None:
    """128x96 H.264 whose picture is 128x64: black bars of `bars` lines above and below."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 128, 96, "yuv420p"
        s.options = {"crf": "10"}
        for i in range(frames):
            img = np.zeros((96, 128, 3), np.uint8)
            # the picture has no black of its own at its edges (a film's might): only the bars
            img[bars : 96 - bars] = np.maximum(moving_bar(i, 128, 96 - 2 * bars), 50)
            f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            f.pts = i
            out.mux(s.encode(f))
        out.mux(s.encode(None))


def interrupted(src: Path, dst: Path, cfg, at: int) -> None:
    """Run until `at` frames are written, then stop it as Ctrl-C would (Cancelled)."""
    import threading

    import pytest

    from vidsr.errors import Cancelled
    from vidsr.jobs.batch import BatchRunner

    cancel = threading.Event()

    def progress(done, total):
        if done >= at:
            cancel.set()

    with pytest.raises(Cancelled):
        BatchRunner(cfg, cancel=cancel).run_one(src, dst, progress=progress)
