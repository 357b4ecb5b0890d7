"""Degradations that make clean LR look like real footage: for training, and for `vidsr eval`.

Every draw comes from the caller's numpy Generator (the sample's own in training, one seeded by
the image's name in eval), so a resumed run or a second eval sees exactly the same damage.

- `--degrade video` (VideoDegradation): blur, noise, JPEG and an H.264/HEVC round trip of the LR.
- `--degrade real` (RealDegradation): a second-order chain in the Real-ESRGAN manner that starts
  from the HR crop and ends at the LR size, with MPEG-4 Part 2, MSMPEG4v2 and MPEG-2 besides
  H.264/HEVC/JPEG, camera sharpening halos and chroma subsampling.
- `vidsr eval --degrade SPEC` (parse_spec): a fixed, named list of steps applied to the LR.

A codec round trip encodes a short pan that ends on the image, so the image is decoded as a
predicted frame (with the ringing and smearing of inter coding), not only as an intra frame.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache

import av
import numpy as np
from av.video.reformatter import Interpolation
from PIL import Image, ImageFilter

from ..errors import VidsrError
from ..quality.imresize import imresize

DEGRADES = ("none", "video", "real", "chain")
# Pixels; smaller pictures are mirror-padded up to this for the encoder. Not less: on tinier
# pictures x265 overruns a lookahead buffer and reads uninitialised memory (valgrind), and the
# same input gave different output from run to run (x265 still at 64; x264's run-to-run
# differences, at any size, were MB-tree's: see _encoder).
MIN_CODED = 96
# RGB <-> YUV as vidsr's decoder and encoder convert (vidsr/media): swscale's default path
# truncates, and a round trip through it came back 0.5 (grey) to 1.2 (saturated) levels darker.
_SWS = Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT


@dataclass(frozen=True)
class Codec:
    encoder: str
    decoder: str
    quality: str  # "crf" (x264/x265 rate factor) or "q" (fixed quantiser of the MPEG-1/2/4 family)
    limits: tuple[int, int]


CODECS = {
    "x264": Codec("libx264", "h264", "crf", (0, 51)),
    "x265": Codec("libx265", "hevc", "crf", (0, 51)),
    "mpeg4": Codec("mpeg4", "mpeg4", "q", (1, 31)),  # MPEG-4 Part 2 (DivX/Xvid, camcorders)
    "msmpeg4v2": Codec("msmpeg4v2", "msmpeg4v2", "q", (1, 31)),  # early AVI/WMV web video
    "mpeg2": Codec("mpeg2video", "mpeg2video", "q", (1, 31)),  # DVD, DVB broadcast
}
DECODERS = {c.encoder: c.decoder for c in CODECS.values()}


@cache
def available_codecs() -> tuple[str, ...]:
    """The encoders VideoDegradation draws from (its draws stay what they were)."""
    return tuple(c for c in ("libx264", "libx265") if c in av.codecs_available)


@cache
def codec_available(name: str) -> bool:
    """`name` is a key of CODECS; both its encoder and its decoder are in this PyAV build."""
    c = CODECS[name]
    return c.encoder in av.codecs_available and c.decoder in av.codecs_available


# -- primitives ---------------------------------------------------------------------------------


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    radius = max(1, int(round(3 * sigma)))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-(t * t) / (2 * sigma * sigma))
    k /= k.sum()
    x = np.pad(img.astype(np.float64), ((radius, radius), (radius, radius), (0, 0)), "reflect")
    x = sum(k[i] * x[i : i + img.shape[0]] for i in range(k.size))  # along H
    x = sum(k[i] * x[:, i : i + img.shape[1]] for i in range(k.size))  # along W
    return _to_uint8(x)


def blur_kernel(sigma_x: float, sigma_y: float, theta: float, beta: float = 2.0) -> np.ndarray:
    """A normalised (generalised) anisotropic Gaussian: beta 2 is Gaussian, < 2 heavier tails,
    > 2 flatter tops (the kernel family of Real-ESRGAN, less the sinc)."""
    radius = max(1, math.ceil(3 * max(sigma_x, sigma_y)))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    yy, xx = np.meshgrid(t, t, indexing="ij")
    c, s = math.cos(theta), math.sin(theta)
    u, v = (c * xx + s * yy) / sigma_x, (-s * xx + c * yy) / sigma_y
    k = np.exp(-0.5 * (u * u + v * v) ** (beta / 2))
    return k / k.sum()


def kernel_blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """`img` convolved with a square odd-sized `kernel` (mirrored borders), by FFT: a 2-D
    kernel of 13x13 taps costs as much as a 3x3 one."""
    h, w = img.shape[:2]
    r = kernel.shape[0] // 2
    if r >= min(h, w):  # a mirror pad cannot be wider than the picture
        c = r - min(h, w) + 1
        kernel, r = kernel[c:-c, c:-c] / kernel[c:-c, c:-c].sum(), min(h, w) - 1
    x = np.pad(img.astype(np.float64), ((r, r), (r, r), (0, 0)), "reflect")
    k = np.zeros(x.shape[:2])
    k[: 2 * r + 1, : 2 * r + 1] = kernel
    k = np.roll(k, (-r, -r), axis=(0, 1))  # centre on (0, 0): the wrap-around lands in the pad
    spectrum = np.fft.rfft2(x, axes=(0, 1)) * np.fft.rfft2(k)[..., None]
    out = np.fft.irfft2(spectrum, s=x.shape[:2], axes=(0, 1))
    return _to_uint8(out[r : r + h, r : r + w])


RESIZE_KERNELS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "area": Image.BOX}


def resize(img: np.ndarray, size: tuple[int, int], kernel: str = "bicubic") -> np.ndarray:
    """To `size` = (H, W) with PIL (antialiased when shrinking, like MATLAB's imresize)."""
    if tuple(size) == img.shape[:2]:
        return img
    out = Image.fromarray(img).resize((size[1], size[0]), RESIZE_KERNELS[kernel])
    return np.array(out)


def add_noise(
    img: np.ndarray, sigma: float, rng: np.random.Generator, *, grey: bool = False
) -> np.ndarray:
    """Gaussian noise of `sigma` grey levels; `grey`: the same on R, G and B (luma noise)."""
    shape = (*img.shape[:2], 1) if grey else img.shape
    return _to_uint8(img.astype(np.float64) + rng.normal(0.0, sigma, shape))


def poisson_noise(
    img: np.ndarray, photons: float, rng: np.random.Generator, *, grey: bool = False
) -> np.ndarray:
    """Shot noise: a pixel at full white collects `photons` (fewer: noisier, and dark areas less
    noisy than bright ones, as on a sensor). `grey`: drawn on luma, added to R, G and B alike."""
    x = img.astype(np.float64) / 255
    if grey:
        y = x @ np.array([0.299, 0.587, 0.114])
        x = x + (rng.poisson(y * photons) / photons - y)[..., None]
    else:
        x = rng.poisson(x * photons) / photons
    return _to_uint8(x * 255)


def unsharp_mask(img: np.ndarray, radius: float, amount: float, threshold: int = 0) -> np.ndarray:
    """The sharpening of consumer cameras and TVs: img + amount * (img - blur), with halos."""
    f = ImageFilter.UnsharpMask(
        radius=radius, percent=int(round(amount * 100)), threshold=threshold
    )
    return np.array(Image.fromarray(img).filter(f))


_RGB_TO_YCC = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
)  # BT.601 full range, as JPEG


def chroma_subsample(img: np.ndarray, upsample: str = "bilinear") -> np.ndarray:
    """A 4:2:0 round trip: chroma averaged over 2x2 pixels and brought back by `upsample`
    (bilinear, or nearest as cheap players do), luma kept.

    In float: PIL's 8-bit YCbCr round trip truncates, which darkened every sample by about a
    level (measured), a bias a model would learn to undo on clean input.
    """
    h, w = img.shape[:2]
    ycc = img.astype(np.float64) @ _RGB_TO_YCC.T
    half = ((w + 1) // 2, (h + 1) // 2)
    up = {"bilinear": Image.BILINEAR, "nearest": Image.NEAREST}[upsample]
    for c in (1, 2):
        plane = Image.fromarray(ycc[..., c].astype(np.float32), mode="F")
        ycc[..., c] = np.asarray(plane.resize(half, Image.BOX).resize((w, h), up))
    return _to_uint8(ycc @ np.linalg.inv(_RGB_TO_YCC).T)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.array(im.convert("RGB"))


def _encoder(codec: str, size: tuple[int, int], crf: int | None, q: int | None):
    enc = av.CodecContext.create(codec, "w")
    enc.width, enc.height, enc.pix_fmt = size[1], size[0], "yuv420p"
    enc.time_base = Fraction(1, 25)
    enc.framerate = Fraction(25, 1)
    # One thread: the same input gives the same bitstream, which resume equality relies on.
    options = {"threads": "1"}
    if crf is not None:
        options |= {"crf": str(crf), "preset": "veryfast"}
    if q is not None:
        # `ffmpeg -q:v N` (a fixed quantiser) needs a per-frame quality PyAV cannot set; pinning
        # the rate control's bounds to N gives the same quantiser on every frame.
        enc.qmin = enc.qmax = int(q)
    if codec == "libx264":
        # MB-tree reads uninitialised lookahead costs at the end of a clip this short: with it,
        # one 96 px input gave 4 different bitstreams in 400 runs (whatever the heap held).
        options["x264-params"] = "mbtree=0"
    if codec == "libx265":
        options["x265-params"] = "log-level=none:frame-threads=1"
    enc.options = options
    return enc


def codec_round_trip(
    img: np.ndarray,
    *,
    codec: str,
    crf: int | None = None,
    q: int | None = None,
    shift: tuple[int, int] = (1, 1),
    frames: int = 3,
) -> np.ndarray:
    """Encode a `frames`-long pan ending on `img` with encoder `codec` at `crf` (libx264/libx265)
    or fixed quantiser `q` (mpeg4, msmpeg4v2, mpeg2video); return the last frame decoded."""
    if (crf is None) == (q is None):
        raise ValueError("give exactly one of crf and q")
    h, w = img.shape[:2]
    # 4:2:0 needs even sizes; x265 refuses pictures smaller than its blocks and (in this build)
    # corrupts memory on sizes that are not multiples of its 8 px minimum coding unit.
    ph, pw = max((-h) % 8, MIN_CODED - h), max((-w) % 8, MIN_CODED - w)
    pad = (frames - 1) * max(abs(shift[0]), abs(shift[1]))
    big = np.pad(img, ((pad, pad + ph), (pad, pad + pw), (0, 0)), "reflect")
    enc = _encoder(codec, (h + ph, w + pw), crf, q)
    packets = []
    for k in range(frames):
        d = frames - 1 - k  # the last frame is the image itself
        y, x = pad + d * shift[0], pad + d * shift[1]
        picture = np.ascontiguousarray(big[y : y + h + ph, x : x + w + pw])
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
        frame = frame.reformat(format="yuv420p", interpolation=_SWS)
        frame.pts = k
        packets += enc.encode(frame)
    packets += enc.encode(None)
    dec = av.CodecContext.create(DECODERS[codec], "r")
    dec.width, dec.height = w + pw, h + ph  # msmpeg4v2 streams do not carry their size
    decoded = []
    for p in packets:
        decoded += dec.decode(p)
    decoded += dec.decode(None)
    return decoded[-1].to_ndarray(format="rgb24", interpolation=_SWS)[:h, :w]


def video_round_trip(img: np.ndarray, name: str, quality: int, *, pan: bool = True, shift=(1, 1)):
    """A round trip through CODECS[`name`] at `quality` (its crf or q); `pan` False codes the
    image alone, as an intra frame."""
    c = CODECS[name]
    kw = {c.quality: int(quality)}
    return codec_round_trip(img, codec=c.encoder, shift=shift, frames=3 if pan else 1, **kw)


# -- --degrade video ----------------------------------------------------------------------------


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


# -- --degrade real -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Order:
    """One order of the chain: blur -> resize -> noise -> sharpen -> compress, each with its
    probability. Sizes are relative to the order's base: the HR for the first, the LR for the
    second (whose compression is the final one, done in random order with the final resize)."""

    blur_p: float
    blur_sigma: tuple[float, float]  # pixels at the size the order starts from
    resize_p: tuple[float, float]  # (up, down); else the first stays, the second goes to the LR
    up: tuple[float, float]  # scale ranges, times the base size
    down: tuple[float, float]
    noise_p: float
    noise_sigma: tuple[float, float]  # Gaussian, grey levels
    photons: tuple[float, float]  # Poisson: photons a white pixel collects (fewer is noisier)
    sharpen_p: float
    compress_p: float
    codec_p: float  # the share of compressions that are codec round trips (else JPEG)


# Lighter than Real-ESRGAN's chain, on purpose (training/RESULTS.md): at its strength (blur to
# sigma 2 at HR, down to 0.35x, noise to sigma 10) the model learnt to smooth everything, and after
# 1.5k steps scored below the clean-trained fast model on x264 crf 30 and MPEG-4 q 6-8 LR. Video
# that reaches vidsr is mostly compressed, seldom that blurred: the codec dominates here.
FIRST_ORDER = Order(
    blur_p=0.3, blur_sigma=(0.2, 1.2), resize_p=(0.1, 0.3), up=(1.0, 1.3), down=(0.5, 1.0),
    noise_p=0.3, noise_sigma=(1.0, 6.0), photons=(300.0, 3000.0),
    sharpen_p=0.15, compress_p=0.3, codec_p=0.3,
)  # fmt: skip
SECOND_ORDER = Order(
    blur_p=0.2, blur_sigma=(0.2, 0.8), resize_p=(0.2, 0.3), up=(1.0, 1.2), down=(0.8, 1.0),
    noise_p=0.3, noise_sigma=(0.5, 3.0), photons=(800.0, 5000.0),
    sharpen_p=0.3, compress_p=0.95, codec_p=0.75,
)  # fmt: skip
# The single-compression share of `--degrade real`: the bicubic LR, maybe a little sensor noise
# and a camera's sharpening, then one JPEG or codec round trip, as most video that reaches vidsr
# was made (downscaled once, compressed once). With the two-order chain alone (a quarter clean)
# the model scored *below* the clean-trained fast on x264 crf 30 and MPEG-4 q 6-8 LR after 750 steps
# (Set14 25.46 vs 25.64, 25.78 vs 26.00 dB): blur and resizes in both orders make the LR-to-HR
# mapping ambiguous and an L1 model answers that by smoothing texture (detail 0.23 vs 0.32).
SINGLE_ORDER = Order(
    blur_p=0.0, blur_sigma=(0.0, 0.0), resize_p=(0.0, 0.0), up=(1.0, 1.0), down=(1.0, 1.0),
    noise_p=0.5, noise_sigma=(0.5, 4.0), photons=(1000.0, 6000.0),
    sharpen_p=0.1, compress_p=1.0, codec_p=0.85,
)  # fmt: skip
# (codec, lowest and highest crf or q, weight): H.264 most, as on the web today; MPEG-4 Part 2
# and MPEG-2 for camcorder, DVD and broadcast sources.
CODEC_DRAWS = (
    ("x264", 20, 36, 0.35),
    ("x265", 22, 38, 0.15),
    ("mpeg4", 3, 10, 0.2),
    ("msmpeg4v2", 3, 10, 0.1),
    ("mpeg2", 3, 10, 0.2),
)


@dataclass(frozen=True, kw_only=True)
class RealDegradation:
    """`--degrade real`: Real-ESRGAN's second-order chain (blur -> resize -> noise -> compress,
    twice, then the final resize to the LR size), from the HR crop: call `from_hr`.

    A share of samples stays clean (the bicubic LR) or only loses its chroma resolution, so
    the model keeps what it knew about clean pictures; the rest (`single_p`) are the bicubic LR
    compressed once (SINGLE_ORDER), the way most video is made. `--degrade chain` is the chain
    itself, with a quarter clean: for footage that was blurred and resized more than once.
    Meant for small crops (96 px HR): no picture in the chain is over 1.5x the crop, so a codec
    round trip costs ~5 ms (mostly the MIN_CODED picture) and a sample ~4 ms on average: over
    200 samples/s on one core.
    """

    clean_p: float = 0.2  # a fifth clean: the clean-x4 skill is a target too (Set5, clean)
    chroma_p: float = 0.05  # of an otherwise clean LR
    # One compression of the bicubic LR (SINGLE_ORDER); the rest (none, by default): the two-order
    # chain. The shipped `real` model trained with 0.75: with 0.5 and a quarter chain it scored
    # 0.05 dB lower on both mixes and lost clean Set5 faster (training/RESULTS.md, runs d and e).
    single_p: float = 0.75
    single: Order = SINGLE_ORDER
    first: Order = FIRST_ORDER
    second_p: float = 0.8  # else the first order's output goes straight to the final step
    second: Order = SECOND_ORDER
    compress_first_p: float = 0.3  # final step: compress, then resize to the LR (else reverse)
    aniso_p: float = 0.5
    beta: tuple[float, float] = (0.5, 4.0)  # generalised-Gaussian shapes, drawn with beta_p
    beta_p: float = 0.2
    poisson_p: float = 0.4  # the share of noise that is shot noise (else Gaussian)
    grey_noise_p: float = 0.4
    sharpen_radius: tuple[float, float] = (0.5, 2.0)  # pixels
    sharpen_amount: tuple[float, float] = (0.3, 1.5)
    jpeg_quality: tuple[int, int] = (30, 95)
    codecs: tuple[tuple[str, int, int, float], ...] = field(default=CODEC_DRAWS)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The chain on an image that is already at its final size (HR = LR, scale 1)."""
        return self.from_hr(img, 1, rng)

    def from_hr(self, hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
        """The degraded LR of an HR crop: (H / scale, W / scale, 3) uint8."""
        lr_size = (hr.shape[0] // scale, hr.shape[1] // scale)
        u = rng.random()
        if u < self.clean_p + self.chroma_p:
            lr = imresize(hr, size=lr_size) if scale > 1 else hr
            if u >= self.clean_p:
                lr = chroma_subsample(lr, ("bilinear", "nearest")[int(rng.integers(2))])
            return np.array(lr)
        if u < self.clean_p + self.chroma_p + self.single_p:
            lr = imresize(hr, size=lr_size) if scale > 1 else hr
            lr = self._sharpen(self._noise(np.array(lr), self.single, rng), self.single, rng)
            return np.array(self._compress(lr, self.single, rng))
        o1, o2 = self.first, self.second
        img = self._blur(hr, o1, rng)
        img = self._resize(img, o1, hr.shape[:2], rng, stay=True)
        img = self._noise(img, o1, rng)
        img = self._compress(self._sharpen(img, o1, rng), o1, rng)
        if rng.random() < self.second_p:
            img = self._blur(img, o2, rng)
            img = self._resize(img, o2, lr_size, rng, stay=False)
            img = self._noise(img, o2, rng)
        if rng.random() < self.compress_first_p:
            img = self._compress(self._sharpen(img, o2, rng), o2, rng)
            img = resize(img, lr_size, self._kernel(rng))
        else:
            img = resize(img, lr_size, self._kernel(rng))
            img = self._compress(self._sharpen(img, o2, rng), o2, rng)
        return np.array(img)

    @staticmethod
    def _kernel(rng: np.random.Generator) -> str:
        return tuple(RESIZE_KERNELS)[int(rng.integers(len(RESIZE_KERNELS)))]

    def _blur(self, img: np.ndarray, o: Order, rng: np.random.Generator) -> np.ndarray:
        if rng.random() >= o.blur_p:
            return img
        sx = rng.uniform(*o.blur_sigma)
        sy = rng.uniform(*o.blur_sigma) if rng.random() < self.aniso_p else sx
        beta = rng.uniform(*self.beta) if rng.random() < self.beta_p else 2.0
        return kernel_blur(img, blur_kernel(sx, sy, rng.uniform(0, math.pi), beta))

    def _resize(self, img, o: Order, base, rng: np.random.Generator, *, stay: bool) -> np.ndarray:
        u = rng.random()
        if u < o.resize_p[0]:
            f = rng.uniform(*o.up)
        elif u < o.resize_p[0] + o.resize_p[1]:
            f = rng.uniform(*o.down)
        elif stay:
            return img
        else:
            f = 1.0
        size = (max(8, round(base[0] * f)), max(8, round(base[1] * f)))
        return resize(img, size, self._kernel(rng))

    def _noise(self, img: np.ndarray, o: Order, rng: np.random.Generator) -> np.ndarray:
        if rng.random() >= o.noise_p:
            return img
        grey = bool(rng.random() < self.grey_noise_p)
        if rng.random() < self.poisson_p:
            return poisson_noise(img, rng.uniform(*o.photons), rng, grey=grey)
        return add_noise(img, rng.uniform(*o.noise_sigma), rng, grey=grey)

    def _sharpen(self, img: np.ndarray, o: Order, rng: np.random.Generator) -> np.ndarray:
        if rng.random() >= o.sharpen_p:
            return img
        radius, amount = rng.uniform(*self.sharpen_radius), rng.uniform(*self.sharpen_amount)
        return unsharp_mask(img, radius, amount, threshold=int(rng.integers(3)))

    def _compress(self, img: np.ndarray, o: Order, rng: np.random.Generator) -> np.ndarray:
        if rng.random() >= o.compress_p:
            return img
        draws = [d for d in self.codecs if codec_available(d[0])]
        if not draws or rng.random() >= o.codec_p:
            return jpeg(img, int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1)))
        weights = np.array([d[3] for d in draws])
        name, lo, hi, _ = draws[int(rng.choice(len(draws), p=weights / weights.sum()))]
        shift = (int(rng.integers(-1, 2)), int(rng.integers(-1, 2)))
        return video_round_trip(img, name, int(rng.integers(lo, hi + 1)), shift=shift)


def build_degradation(name: str) -> VideoDegradation | RealDegradation | None:
    if name == "none":
        return None
    if name == "video":
        return VideoDegradation()
    if name == "real":
        return RealDegradation()
    if name == "chain":
        return RealDegradation(clean_p=0.25, single_p=0.0)
    raise VidsrError(f"unknown degradation {name!r}; choose from {', '.join(DEGRADES)}")


# -- vidsr eval --degrade SPEC ------------------------------------------------------------------


@dataclass(frozen=True)
class StepKind:
    key: str | None  # "crf" or "q" for KIND:KEY=N items; None for a bare value (noise:5)
    integer: bool
    limits: tuple[float, float]
    unit: str  # for the grammar line


STEP_KINDS = {
    **{name: StepKind(c.quality, True, c.limits, "N") for name, c in CODECS.items()},
    "jpeg": StepKind("q", True, (1, 95), "N"),
    "noise": StepKind(None, False, (0, 100), "SIGMA"),
    "blur": StepKind(None, False, (0.05, 8), "SIGMA"),
}
MIXES = {"web": "x264:crf=30:pan", "legacy": "noise:2,mpeg4:q=6-8:pan"}
_ITEMS = [f"{k}:{v.key}={v.unit}" if v.key else f"{k}:{v.unit}" for k, v in STEP_KINDS.items()]
GRAMMAR = (
    "SPEC is a comma-list applied in order of "
    + ", ".join(_ITEMS)
    + " (a codec item may end in :intra, else it codes a short pan; a value may be a range A-B,"
    " drawn per image), or a mix: " + ", ".join(MIXES)
)


class SpecError(VidsrError):
    exit_code = 2


@dataclass(frozen=True)
class Step:
    """One step of a SPEC; a range (low < high) is drawn per image from the image's generator."""

    kind: str
    low: float
    high: float
    pan: bool = True  # codecs only: a 3-frame pan, so the image is decoded as a predicted frame

    def __str__(self) -> str:
        k = STEP_KINDS[self.kind]
        fmt = (lambda v: str(int(v))) if k.integer else (lambda v: f"{v:g}")  # noqa: E731
        value = fmt(self.low) if self.low == self.high else f"{fmt(self.low)}-{fmt(self.high)}"
        text = f"{self.kind}:{k.key}={value}" if k.key else f"{self.kind}:{value}"
        return text + (":pan" if self.pan else ":intra") if self.kind in CODECS else text

    def draw(self, rng: np.random.Generator) -> float:
        """The step's value: its range drawn from `rng`, or its one value."""
        if self.high > self.low:
            if STEP_KINDS[self.kind].integer:
                return int(rng.integers(self.low, self.high + 1))
            return rng.uniform(self.low, self.high)
        return self.low

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        v = self.draw(rng)
        if self.kind in CODECS:
            return video_round_trip(img, self.kind, int(v), pan=self.pan)
        return self.picture(img, v, rng)

    def picture(self, img: np.ndarray, v: float, rng: np.random.Generator) -> np.ndarray:
        """The step at value `v` on one picture (not a codec: see degrade_clip)."""
        if self.kind == "jpeg":
            return jpeg(img, int(v))
        if self.kind == "noise":
            return add_noise(img, v, rng)
        return gaussian_blur(img, v)


@dataclass(frozen=True)
class DegradeSpec:
    steps: tuple[Step, ...]
    mix: str | None = None  # the name it was given by, when a named mix

    def __str__(self) -> str:
        body = ",".join(map(str, self.steps))
        return f"{self.mix} = {body}" if self.mix else body

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for step in self.steps:
            img = step(img, rng)
        return img


def degrade_clip(frames: np.ndarray, spec: DegradeSpec, seed: int) -> np.ndarray:
    """`spec` on a clip, (n, h, w, 3) uint8: a codec step codes the frames as one video (so the
    damage moves and changes from frame to frame as it does in real video); the other steps
    apply to each frame, with fresh noise per frame. A range is drawn once per clip."""
    rng = np.random.default_rng(seed)
    for step in spec.steps:
        v = step.draw(rng)
        if step.kind in CODECS:
            c = CODECS[step.kind]
            frames = codec_clip(frames, codec=c.encoder, **{c.quality: int(v)})
        else:
            frames = np.stack([step.picture(f, v, rng) for f in frames])
    return frames


def codec_clip(
    frames: np.ndarray, *, codec: str, crf: int | None = None, q: int | None = None
) -> np.ndarray:
    """The frames (n, h, w, 3) uint8 coded as one video by `codec` at `crf` or `q`, decoded."""
    if (crf is None) == (q is None):
        raise ValueError("give exactly one of crf and q")
    n, h, w = frames.shape[:3]
    ph, pw = max((-h) % 8, MIN_CODED - h), max((-w) % 8, MIN_CODED - w)  # as codec_round_trip
    enc = _encoder(codec, (h + ph, w + pw), crf, q)
    packets = []
    for k, img in enumerate(frames):
        picture = np.pad(img, ((0, ph), (0, pw), (0, 0)), "reflect") if ph or pw else img
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
        frame = frame.reformat(format="yuv420p", interpolation=_SWS)
        frame.pts = k
        packets += enc.encode(frame)
    packets += enc.encode(None)
    dec = av.CodecContext.create(DECODERS[codec], "r")
    dec.width, dec.height = w + pw, h + ph
    decoded = []
    for p in packets:
        decoded += dec.decode(p)
    decoded += dec.decode(None)
    if len(decoded) != n:
        raise RuntimeError(f"{codec}: {n} frames coded, {len(decoded)} decoded")
    out = [f.to_ndarray(format="rgb24", interpolation=_SWS)[:h, :w] for f in decoded]
    return np.stack(out)


def name_seed(name: str) -> int:
    """A seed from an image's name: its damage does not depend on what else is in the folder."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


def _value(text: str, kind: StepKind, part: str) -> tuple[float, float]:
    ends = text.split("-")
    try:
        if len(ends) > 2 or not all(ends):
            raise ValueError
        vals = [int(e) if kind.integer else float(e) for e in ends]
    except ValueError:
        need = "an integer" if kind.integer else "a number"
        raise SpecError(f"--degrade: {part!r} needs {need} or a range A-B; {GRAMMAR}") from None
    low, high = vals[0], vals[-1]
    lo, hi = kind.limits
    if low > high:
        raise SpecError(f"--degrade: {part!r}: a range A-B needs A <= B; {GRAMMAR}")
    if not (lo <= low and high <= hi):  # also catches nan and inf
        raise SpecError(f"--degrade: {part!r} is outside {lo:g}-{hi:g}; {GRAMMAR}")
    return float(low), float(high)


def _step(part: str) -> Step:
    head, *rest = part.split(":")
    kind = STEP_KINDS.get(head)
    if kind is None:
        raise SpecError(f"--degrade: unknown step {part!r}; {GRAMMAR}")
    flags = [r for r in rest if r in ("pan", "intra")] if head in CODECS else []
    values = [r for r in rest if r not in flags]
    key = f"{kind.key}=" if kind.key else ""
    if len(values) != 1 or len(flags) > 1 or not values[0].startswith(key):
        form = f"{head}:{key}{kind.unit}" + ("[:pan|:intra]" if head in CODECS else "")
        raise SpecError(f"--degrade: {part!r} should read {form}; {GRAMMAR}")
    if head in CODECS and not codec_available(head):
        raise SpecError(f"--degrade: {part!r}: this PyAV build lacks {CODECS[head].encoder}")
    low, high = _value(values[0][len(key) :], kind, part)
    return Step(head, low, high, pan=flags != ["intra"])


def parse_spec(text: str) -> DegradeSpec:
    """`x264:crf=32`, `noise:2,mpeg4:q=6-8`, `web` ... -> DegradeSpec; SpecError names the bad
    part."""
    text = text.strip()
    mix = text if text in MIXES else None
    parts = [p.strip() for p in (MIXES[mix] if mix else text).split(",")]
    if not all(parts):
        raise SpecError(f"--degrade: empty step in {text!r}; {GRAMMAR}")
    return DegradeSpec(tuple(_step(p) for p in parts), mix)
