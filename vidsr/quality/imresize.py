"""MATLAB-compatible `imresize(img, 1/s, 'bicubic')`: the kernel behind every x4 SR benchmark.

The benchmark LR images (Set5, Set14, ...) were made with MATLAB's imresize, which widens the
cubic kernel by the scale factor when shrinking (antialiasing), mirrors the border and resizes one
axis at a time. For uint8 input it rounds back to uint8 after each axis (its mex returns the input
class), so we do the same: that is what brings our LR within a few hundredths of a grey level of
the distributed files rather than merely close.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


def _cubic(x: np.ndarray) -> np.ndarray:
    # Keys' kernel with a = -0.5, written the way MATLAB's imresize.m writes it.
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    near = 1.5 * ax3 - 2.5 * ax2 + 1
    far = -0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2
    return near * (ax <= 1) + far * ((ax > 1) & (ax <= 2))


@lru_cache(maxsize=64)
def _contributions(
    in_len: int, out_len: int, scale: float, antialias: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(weights, indices), each (out_len, taps): output i = sum_k weights[i, k] * in[indices[i,
    k]].
    """
    width = 4.0
    if scale < 1 and antialias:
        kernel = lambda x: scale * _cubic(scale * x)  # noqa: E731 - mirrors MATLAB's h = @(x) ...
        width = width / scale
    else:
        kernel = _cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # output pixel centre in (1-based) input coordinates
    left = np.floor(u - width / 2)
    taps = math.ceil(width) + 2
    ind = left[:, None] + np.arange(taps)[None, :]  # 1-based input indices
    weights = kernel(u[:, None] - ind)
    weights = weights / weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])  # symmetric pad
    indices = mirror[np.mod(ind.astype(np.int64) - 1, mirror.size)]
    keep = np.any(weights != 0, axis=0)  # MATLAB drops all-zero tap columns
    return weights[:, keep], indices[:, keep]


def _resize_axis(img: np.ndarray, axis: int, out_len: int, scale: float, antialias: bool):
    weights, indices = _contributions(img.shape[axis], out_len, scale, antialias)
    moved = np.moveaxis(img, axis, 0).astype(np.float64)  # (L, ...)
    gathered = moved[indices]  # (out, taps, ...)
    w = weights.reshape(weights.shape + (1,) * (moved.ndim - 1))
    return np.moveaxis((gathered * w).sum(axis=1), 0, axis)


def imresize(
    img: np.ndarray,
    scale: float | None = None,
    *,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
) -> np.ndarray:
    """Resize an (H, W) or (H, W, C) image by `scale` (or to `size` = (H, W)) as MATLAB does.

    uint8 in -> uint8 out (rounded after each axis, as MATLAB); float in -> float64 out.
    """
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale and size")
    h, w = img.shape[:2]
    if size is None:
        scales = (float(scale), float(scale))
        size = (math.ceil(h * scale), math.ceil(w * scale))
    else:
        scales = (size[0] / h, size[1] / w)
    is_uint8 = img.dtype == np.uint8
    # MATLAB resizes the dimension that shrinks most first; ties: rows (height) first.
    order = (0, 1) if scales[0] <= scales[1] else (1, 0)
    out = img
    for axis in order:
        out = _resize_axis(out, axis, size[axis], scales[axis], antialias)
        if is_uint8:
            out = np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)  # MATLAB rounds half up
    return out


def mod_crop(img: np.ndarray, modulus: int) -> np.ndarray:
    """Crop the bottom/right so height and width are multiples of `modulus` (benchmark habit)."""
    h, w = img.shape[:2]
    return img[: h - h % modulus, : w - w % modulus]
