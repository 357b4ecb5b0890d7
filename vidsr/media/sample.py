"""A sample clip for first runs and benchmarks: moving detail, a tone on stereo AAC, BT.709 tags."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import OutputError


def sample_frame(i: int, width: int, height: int) -> np.ndarray:
    """Frame i of the sample: a sky gradient, a drifting checkerboard, rings and a moving disc."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    v = y / max(1, height - 1)
    img = np.empty((height, width, 3), np.float32)
    img[..., 0] = 40 + 120 * v
    img[..., 1] = 90 + 100 * v
    img[..., 2] = 200 - 60 * v
    ground = v > 0.6
    checker = ((np.floor((x + 2 * i) / 6) + np.floor(y / 6)) % 2).astype(np.float32)
    img[ground] = (np.stack([110 + 90 * checker, 90 + 60 * checker, 60 + 30 * checker], -1))[ground]
    cx, cy = width * (0.2 + 0.6 * ((i % 50) / 50)), height * 0.35
    r = np.hypot(x - cx, y - cy)
    img[r < height * 0.12] = (240, 200, 60)
    rings = np.hypot(x - width * 0.8, y - height * 0.3)
    img[..., :] += (20 * np.sin(rings * 0.9))[..., None] * (rings < height * 0.2)[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def write_sample(
    path: Path,
    *,
    width: int = 320,
    height: int = 180,
    seconds: float = 2.0,
    fps: int = 25,
    audio: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write the sample clip (H.264 + AAC in mp4, BT.709 limited range) to `path`."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputError(f"{path} exists; pass --overwrite to replace it")
    frames = max(1, round(seconds * fps))
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "veryfast", "crf": "16"}
        cc = video.codec_context
        cc.colorspace = cc.color_primaries = cc.color_trc = 1  # BT.709
        cc.color_range = 1
        sound = None
        if audio:
            sound = out.add_stream("aac", rate=48000)
            sound.layout = "stereo"
        out.start_encoding()
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(sample_frame(i, width, height), format="rgb24")
            frame = frame.reformat(format="yuv420p", dst_colorspace=1, dst_color_range=1)
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            samples = int(frames / fps * 48000)
            t = np.arange(samples) / 48000
            tone = (0.15 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = np.ascontiguousarray(np.stack([tone[start : start + 1024]] * 2))
                af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                af.sample_rate, af.pts = 48000, start
                out.mux(sound.encode(af))
            out.mux(sound.encode(None))
    return path
