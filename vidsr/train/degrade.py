"""Degradations of an LR crop that look like the footage a fine-tuned model will see.

Each is drawn per sample from the sample's own generator (so a resumed run draws the same ones):
Gaussian blur, Gaussian noise, JPEG, and a real H.264/HEVC round trip through PyAV at a random CRF.
The codec round trip encodes a short pan that ends on the crop, so the crop is decoded as a
predicted frame (with the ringing and smearing of inter coding), not only as an intra frame.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from functools import cache

import av
import numpy as np
from PIL import Image

DEGRADES = ("none", "video")
DECODERS = {"libx264": "h264", "libx265": "hevc"}
# Pixels; smaller crops are mirror-padded up to this for the encoder. Not less: on tinier pictures
# x265 overruns a lookahead buffer and reads uninitialised memory (valgrind), and the same input
# gave different output from run to run (x264 too: flaky at 32 px, x265 still at 64).
MIN_CODED = 96


@cache
def available_codecs() -> tuple[str, ...]:
    return tuple(c for c in DECODERS if c in av.codecs_available)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    radius = max(1, int(round(3 * sigma)))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-(t * t) / (2 * sigma * sigma))
    k /= k.sum()
    x = np.pad(img.astype(np.float64), ((radius, radius), (radius, radius), (0, 0)), "reflect")
    x = sum(k[i] * x[i : i + img.shape[0]] for i in range(k.size))  # along H
    x = sum(k[i] * x[:, i : i + img.shape[1]] for i in range(k.size))  # along W
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def add_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    noisy = img.astype(np.float64) + rng.normal(0.0, sigma, img.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.array(im.convert("RGB"))


def codec_round_trip(
    img: np.ndarray, *, codec: str, crf: int, shift: tuple[int, int] = (1, 1), frames: int = 3
) -> np.ndarray:
    """Encode a `frames`-long pan ending on `img` with `codec` at `crf`; return the last frame."""
    h, w = img.shape[:2]
    # 4:2:0 needs even sizes; x265 refuses pictures smaller than its blocks and (in this build)
    # corrupts memory on sizes that are not multiples of its 8 px minimum coding unit.
    ph, pw = max((-h) % 8, MIN_CODED - h), max((-w) % 8, MIN_CODED - w)
    pad = (frames - 1) * max(abs(shift[0]), abs(shift[1]))
    big = np.pad(img, ((pad, pad + ph), (pad, pad + pw), (0, 0)), "reflect")
    clip = []
    for k in range(frames):
        d = frames - 1 - k  # the last frame is the crop itself
        y, x = pad + d * shift[0], pad + d * shift[1]
        clip.append(np.ascontiguousarray(big[y : y + h + ph, x : x + w + pw]))
    enc = av.CodecContext.create(codec, "w")
    enc.width, enc.height, enc.pix_fmt = w + pw, h + ph, "yuv420p"
    enc.time_base = Fraction(1, 25)
    enc.framerate = Fraction(25, 1)
    # One thread: the same input gives the same bitstream, which resume equality relies on.
    enc.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
    if codec == "libx265":
        enc.options = {**enc.options, "x265-params": "log-level=none:frame-threads=1"}
    packets = []
    for i, f in enumerate(clip):
        frame = av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        packets += enc.encode(frame)
    packets += enc.encode(None)
    dec = av.CodecContext.create(DECODERS[codec], "r")
    decoded = []
    for p in packets:
        decoded += dec.decode(p)
    decoded += dec.decode(None)
    return decoded[-1].to_ndarray(format="rgb24")[:h, :w]


@dataclass(frozen=True)
class VideoDegradation:
    """`--degrade video`: each step applies with its probability, in capture-to-delivery order."""

    blur_p: float = 0.4
    blur_sigma: tuple[float, float] = (0.3, 1.2)
    noise_p: float = 0.4
    noise_sigma: tuple[float, float] = (1.0, 6.0)  # grey levels
    jpeg_p: float = 0.2
    jpeg_quality: tuple[int, int] = (50, 95)
    codec_p: float = 0.8
    crf: tuple[int, int] = (18, 38)

    def __call__(self, lr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < self.blur_p:
            lr = gaussian_blur(lr, rng.uniform(*self.blur_sigma))
        if rng.random() < self.noise_p:
            lr = add_noise(lr, rng.uniform(*self.noise_sigma), rng)
        if rng.random() < self.jpeg_p:
            lr = jpeg(lr, int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1)))
        codecs = available_codecs()
        if codecs and rng.random() < self.codec_p:
            codec = codecs[int(rng.integers(len(codecs)))]
            crf = int(rng.integers(self.crf[0], self.crf[1] + 1))
            shift = (int(rng.integers(-1, 2)), int(rng.integers(-1, 2)))
            lr = codec_round_trip(lr, codec=codec, crf=crf, shift=shift)
        return lr


def build_degradation(name: str) -> VideoDegradation | None:
    if name == "none":
        return None
    if name == "video":
        return VideoDegradation()
    raise ValueError(f"unknown degradation {name!r}; choose from {', '.join(DEGRADES)}")
