"""Still images in and out: PNG, JPEG, WebP and TIFF, at 8 or 16 bits per channel.

Pillow reads every format and its metadata (EXIF orientation, ICC profile), but holds colour at
8 bits per channel only: a 16-bit RGB PNG would silently lose its low byte. So the pixels of
16-bit PNG and TIFF files travel through FFmpeg's png and tiff codecs (PyAV) instead, as uint16,
and the engine's uint16 path keeps all 16 bits. Pictures are upright (EXIF orientation applied)
before they are upscaled, and written without the orientation tag, so no viewer turns them again.

Alpha is not a colour: it is upscaled with the bicubic kernel (vidsr.models.Bicubic), not the
network, and kept where the output format holds it (PNG, WebP, TIFF; JPEG drops it, with a note).
A greyscale source is upscaled as R=G=B and written back as greyscale.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InputError, OutputError
from .staging import WriterLock, is_temp_name, temp_path_for

# Extension -> Pillow format name; the same table says what we read and what we write.
IMAGE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
# What is read as an image: what is written as one, and a still GIF (see is_image).
IMAGE_EXTENSIONS = frozenset(IMAGE_FORMATS) | {".gif"}
ORIENTATION = 0x0112  # the EXIF tag
# Encoder settings for an upscale: near-transparent quality, full-resolution chroma.
_SAVE_OPTIONS = {
    "PNG": {},
    "JPEG": {"quality": 95, "subsampling": 0},
    "WEBP": {"quality": 95},
    "TIFF": {"compression": "tiff_adobe_deflate"},
}
# Packed 16-bit layouts of FFmpeg's png (big-endian) and tiff (little-endian) codecs, by
# (channels, endianness): grey, grey + alpha, RGB, RGBA.
_DEEP_PIX_FMTS = {1: "gray16", 2: "ya16", 3: "rgb48", 4: "rgba64"}
_DEEP_CODECS = {"PNG": ("png", "be", {"pred": "paeth"}), "TIFF": ("tiff", "le", {})}
_BT601 = np.array([0.299, 0.587, 0.114])  # grey from RGB, as Pillow's convert("L")


@dataclass
class Picture:
    """An upright image: (H, W, 3) RGB, uint8 or uint16, with what travels with it."""

    rgb: np.ndarray
    alpha: np.ndarray | None = None  # (H, W), the same dtype as rgb
    grey: bool = False  # the source had one colour channel: written back with one
    icc: bytes | None = None
    exif: bytes | None = None  # without the orientation tag: the pixels are already upright
    path: Path | None = None
    notes: list[str] = field(default_factory=list)  # what was changed on the way, for the user

    @property
    def bit_depth(self) -> int:
        return 8 if self.rgb.dtype == np.uint8 else 16

    @property
    def height(self) -> int:
        return self.rgb.shape[0]

    @property
    def width(self) -> int:
        return self.rgb.shape[1]


def gif_frames(path: Path) -> int:
    """The frames of a GIF (0 if it cannot be read: reading it as an image will say why)."""
    try:
        with Image.open(path) as im:
            return int(getattr(im, "n_frames", 1))
    except (OSError, ValueError, UnidentifiedImageError):
        return 0


def is_image(path: Path) -> bool:
    """Upscaled as an image: a PNG, JPEG, WebP or TIFF, or a GIF of one frame. An animated GIF
    is a video to FFmpeg, its frame delays its timestamps, and goes the video way."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        return not (path.is_file() and gif_frames(path) > 1)
    return suffix in IMAGE_EXTENSIONS


def image_output(src: Path, out_dir: Path | None = None, tag: str = "x4") -> Path:
    """`<stem>_x4.png` beside `src` (or in `out_dir`): PNG holds 16 bits and alpha, lossless."""
    return (out_dir or src.parent) / f"{src.stem}_{tag}.png"


def list_images(folder: Path) -> list[Path]:
    """The images directly inside `folder`, skipping our own outputs and temporary files."""
    return sorted(
        p
        for p in folder.iterdir()
        if is_image(p)
        and p.is_file()
        and not p.name.startswith(".")
        and not re.search(r"_x\d+(\.\d+)?(-\d+)?$", p.stem)  # our own outputs
        and not is_temp_name(p.name)
    )


def check_image_suffix(dst: Path) -> None:
    if dst.suffix.lower() not in IMAGE_FORMATS:
        raise OutputError(
            f"{dst.name}: an image is written as .png, .jpg, .webp or .tif; "
            "give -o one of those extensions"
        )


# -- reading -------------------------------------------------------------------------------------


def read_image(path: Path) -> Picture:
    """The picture in `path`, upright; InputError (one line) when it is not a readable image."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    try:
        with Image.open(path) as im:
            if getattr(im, "n_frames", 1) > 1:
                raise InputError(
                    f"{path} is an animated image ({im.n_frames} frames); convert it to a video"
                )
            icc = im.info.get("icc_profile") or None
            exif = _exif_without_orientation(im)
            if _is_deep(path, im):
                pic = _read_deep(path, im.getexif().get(ORIENTATION, 1))
            else:
                pic = _from_pillow(ImageOps.exif_transpose(im))
    except InputError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise InputError(f"{path} is not a readable image ({_first_line(e)})") from None
    except (OSError, ValueError, SyntaxError, av.error.FFmpegError) as e:
        raise InputError(f"{path} is not a readable image ({_first_line(e)})") from None
    pic.path, pic.exif = path, exif
    pic.icc = _icc_for(icc, pic, pic.notes)
    return pic


def _is_deep(path: Path, im: Image.Image) -> bool:
    """More than 8 bits per channel, which Pillow cannot hold for colour images."""
    if im.format == "PNG":
        with open(path, "rb") as f:
            return f.read(26)[24] == 16  # IHDR bit depth
    if im.format == "TIFF":
        bits = im.tag_v2.get(258, 8)
        bits = max(bits) if isinstance(bits, tuple) else bits
        if bits > 16:
            raise InputError(f"{path}: {bits}-bit TIFF is not supported; save it with 16 bits")
        return bits > 8
    return im.mode.startswith("I;16")


def _read_deep(path: Path, orientation: int) -> Picture:
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
    channels = len(frame.format.components)
    if channels in (2, 4):
        rgba = frame.to_ndarray(format="rgba64le")  # grey + alpha comes out R=G=B: exact
        rgb, alpha = rgba[..., :3], rgba[..., 3]
    else:
        rgb, alpha = frame.to_ndarray(format="rgb48le"), None
    rgb = np.ascontiguousarray(_orient(rgb, orientation))
    if alpha is not None:
        alpha = np.ascontiguousarray(_orient(alpha, orientation))
    return Picture(rgb, alpha, grey=channels <= 2)


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF orientation on an (H, W, ...) array, exactly as ImageOps.exif_transpose does."""
    swap = a.swapaxes(0, 1)
    return {
        2: a[:, ::-1],  # mirrored
        3: a[::-1, ::-1],  # upside down
        4: a[::-1],  # flipped
        5: swap,  # transposed
        6: np.rot90(a, -1),  # rotated 90 degrees clockwise to show it upright
        7: swap[::-1, ::-1],  # transversed
        8: np.rot90(a, 1),  # rotated 90 degrees counter-clockwise
    }.get(orientation, a)


def _from_pillow(im: Image.Image) -> Picture:
    notes: list[str] = []
    if im.mode in ("1", "L", "LA", "La"):
        grey = im.convert("LA" if "A" in im.mode or "a" in im.mode else "L")
        a = np.asarray(grey)
        lum = a if a.ndim == 2 else a[..., 0]
        rgb = np.repeat(lum[..., None], 3, axis=2)
        return Picture(rgb, a[..., 1].copy() if a.ndim == 3 else None, grey=True)
    if im.mode in ("I", "F"):
        raise InputError(f"{im.mode}-mode (32-bit) images are not supported; save it with 16 bits")
    alpha = "A" in im.mode or "a" in im.mode or im.has_transparency_data
    if im.mode == "CMYK":
        notes.append("CMYK converted to RGB without colour management")
    a = np.asarray(im.convert("RGBA" if alpha else "RGB"))
    if alpha:
        return Picture(np.ascontiguousarray(a[..., :3]), a[..., 3].copy(), notes=notes)
    return Picture(a.copy(), notes=notes)


def _exif_without_orientation(im: Image.Image) -> bytes | None:
    """The source's EXIF block, minus its orientation tag. TIFF files carry none of their own:
    Pillow's getexif() there is the TIFF directory, which describes the old file, not a photo."""
    raw = im.info.get("exif")
    if not raw:
        return None
    exif = Image.Exif()
    exif.load(raw)
    exif.pop(ORIENTATION, None)
    return exif.tobytes() if len(exif) or exif.get_ifd(0x8769) else None


def _icc_for(icc: bytes | None, pic: Picture, notes: list[str]) -> bytes | None:
    """The profile, if it describes the colour space the pixels are now in."""
    if icc is None:
        return None
    space = icc[16:20]
    if space == (b"GRAY" if pic.grey else b"RGB "):
        return icc
    notes.append(f"the ICC profile ({space.decode(errors='replace').strip()}) was dropped: "
                 "it does not describe the converted pixels")  # fmt: skip
    return None


def _first_line(e: BaseException) -> str:
    msg = str(e).strip()
    return msg.splitlines()[0] if msg else type(e).__name__


# -- upscaling -----------------------------------------------------------------------------------


def upscale_picture(pic: Picture, engine) -> Picture:
    """The picture through `engine` (a vidsr.upscale.engine.Engine); alpha through the bicubic
    kernel."""
    import torch

    from ..models.bicubic import Bicubic

    frames = torch.from_numpy(np.ascontiguousarray(pic.rgb))[None]
    rgb = engine(frames)[0].cpu().numpy()
    alpha = None
    if pic.alpha is not None:
        full = 255.0 if pic.alpha.dtype == np.uint8 else 65535.0
        x = torch.from_numpy(pic.alpha.astype(np.float32) / full)[None, None]
        with torch.inference_mode():
            y = Bicubic(scale=engine.scale)(x)[0, 0]
        alpha = (y.clamp(0, 1) * full).round().numpy().astype(pic.alpha.dtype)
    return replace(pic, rgb=rgb, alpha=alpha, notes=list(pic.notes))


# -- writing -------------------------------------------------------------------------------------


def write_image(pic: Picture, dst: Path, *, overwrite: bool = False, warn=None) -> int:
    """Write `pic` as the format of `dst`'s extension, beside it first, then renamed into place.

    Returns the bytes written. Never replaces an existing file unless `overwrite`.
    """
    dst = Path(dst)
    check_image_suffix(dst)
    if dst.exists() and not overwrite:
        raise OutputError(f"{dst} exists; pass --overwrite to replace it")
    if not dst.parent.is_dir():
        raise OutputError(f"output folder does not exist: {dst.parent}")
    fmt = IMAGE_FORMATS[dst.suffix.lower()]
    tmp = temp_path_for(dst)
    try:
        lock = WriterLock(tmp)  # a concurrent run's sweep must not take us for a dead writer
    except OSError as e:
        raise OutputError(f"cannot write {dst}: {e.strerror}") from None
    try:
        _save(pic, tmp, fmt, warn or (lambda msg: None))
        os.replace(tmp, dst)
    except OSError as e:
        raise OutputError(f"cannot write {dst}: {e.strerror or e}") from None
    finally:
        lock.release()
        with contextlib.suppress(OSError):
            tmp.unlink()
    return dst.stat().st_size


def _save(pic: Picture, path: Path, fmt: str, warn) -> None:
    if pic.bit_depth > 8 and fmt in _DEEP_CODECS:
        _save_deep(pic, path, fmt, warn)
        return
    if pic.bit_depth > 8:
        warn(f"{fmt} holds 8 bits per channel: written with 8; use .png or .tif to keep 16")
        pic = to_8bit(pic)
    options = dict(_SAVE_OPTIONS[fmt])
    img = _to_pillow(pic, fmt, warn)
    if pic.icc is not None and (img.mode in ("L", "LA")) == pic.grey:
        options["icc_profile"] = pic.icc
    elif pic.icc is not None:
        warn(f"the ICC profile was dropped: {fmt} cannot hold greyscale")
    if pic.exif is not None and fmt != "TIFF":  # TIFF tags would merge into its own directory
        options["exif"] = pic.exif
    img.save(path, format=fmt, **options)


def to_8bit(pic: Picture) -> Picture:
    def down(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)

    return replace(pic, rgb=down(pic.rgb), alpha=down(pic.alpha))


def _grey_of(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(rgb @ _BT601), 0, np.iinfo(rgb.dtype).max).astype(rgb.dtype)


def _to_pillow(pic: Picture, fmt: str, warn) -> Image.Image:
    alpha = pic.alpha
    if alpha is not None and fmt == "JPEG":
        warn("JPEG has no alpha channel: transparency dropped; use .png to keep it")
        alpha = None
    grey = pic.grey and fmt != "WEBP"  # WebP holds RGB only
    if grey:
        lum = _grey_of(pic.rgb)
        return Image.fromarray(lum if alpha is None else np.dstack([lum, alpha]),
                               "L" if alpha is None else "LA")  # fmt: skip
    if alpha is None:
        return Image.fromarray(pic.rgb, "RGB")
    return Image.fromarray(np.dstack([pic.rgb, alpha]), "RGBA")


def _save_deep(pic: Picture, path: Path, fmt: str, warn) -> None:
    """16 bits per channel through FFmpeg's png or tiff encoder; PNG also gets ICC and EXIF."""
    codec, endian, options = _DEEP_CODECS[fmt]
    planes = [_grey_of(pic.rgb)[..., None]] if pic.grey else [pic.rgb]
    if pic.alpha is not None:
        planes.append(pic.alpha[..., None])
    samples = np.concatenate(planes, axis=2)
    pix_fmt = _DEEP_PIX_FMTS[samples.shape[2]] + endian
    cc = av.CodecContext.create(codec, "w")
    cc.width, cc.height, cc.pix_fmt = pic.width, pic.height, pix_fmt
    cc.options = options
    frame = _packed_frame(samples, pix_fmt, ">u2" if endian == "be" else "<u2")
    data = b"".join(bytes(p) for p in cc.encode(frame) + cc.encode(None))
    if fmt == "PNG":
        data = _with_png_chunks(data, pic.icc, pic.exif)
    elif pic.icc is not None:
        warn("the ICC profile was dropped: FFmpeg's TIFF writer cannot store one; "
             "use .png to keep it with 16 bits")  # fmt: skip
    path.write_bytes(data)


def _packed_frame(samples: np.ndarray, pix_fmt: str, dtype: str) -> av.VideoFrame:
    """A VideoFrame of one packed plane, filled row by row (PyAV has no from_ndarray for ya16)."""
    h, w, c = samples.shape
    frame = av.VideoFrame(w, h, pix_fmt)
    plane = frame.planes[0]
    rows = np.zeros((h, plane.line_size // 2), dtype=dtype)
    rows[:, : w * c] = samples.reshape(h, w * c)
    plane.update(rows.tobytes())
    return frame


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _with_png_chunks(png: bytes, icc: bytes | None, exif: bytes | None) -> bytes:
    """iCCP and eXIf right after IHDR, where the PNG spec wants them (before any IDAT).

    FFmpeg's encoder writes neither from PyAV, and Pillow, which does, cannot write 16-bit RGB.
    """
    extra = b""
    if icc is not None:
        extra += _png_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(icc))
    if exif is not None:
        extra += _png_chunk(b"eXIf", exif.removeprefix(b"Exif\0\0"))
    end_of_ihdr = 8 + 8 + 13 + 4  # signature, IHDR length and type, its 13 bytes, CRC
    return png[:end_of_ihdr] + extra + png[end_of_ihdr:]


__all__ = [
    "IMAGE_EXTENSIONS",
    "IMAGE_FORMATS",
    "Picture",
    "check_image_suffix",
    "image_output",
    "is_image",
    "list_images",
    "read_image",
    "to_8bit",
    "upscale_picture",
    "write_image",
]
