"""PSNR and SSIM on the Y channel: the one protocol `vidsr eval` and training validation share.

The SR literature's numbers (bicubic Set5 x4 = 28.42 dB, SRResNet 32.05 dB) are computed on the
BT.601 luma of studio range (16-235), with `shave` pixels cut from every border, per image, then
averaged over images. SSIM is Wang et al.'s: an 11x11 Gaussian window (sigma 1.5) over 8-bit Y.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

# BT.601 studio-range luma for RGB in [0, 255] (MATLAB's rgb2ycbcr, without its rounding).
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) float64 Y in [16, 235]; grey images pass through as Y."""
    x = img.astype(np.float64)
    if x.ndim == 2:
        return x
    return x @ _Y_WEIGHTS + 16.0


def shave(img: np.ndarray, border: int) -> np.ndarray:
    return img[border:-border, border:-border] if border > 0 else img


def psnr(a: np.ndarray, b: np.ndarray, *, peak: float = 255.0) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size, dtype=torch.float64) - size // 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(a: np.ndarray, b: np.ndarray, *, peak: float = 255.0) -> float:
    """Mean SSIM of two (H, W) images over the valid (unpadded) window positions."""
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    w = _gaussian_window()[None, None]  # (1, 1, 11, 11)
    x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))[None, None]
    y = torch.from_numpy(np.ascontiguousarray(b, dtype=np.float64))[None, None]
    mu_x, mu_y = F.conv2d(x, w), F.conv2d(y, w)
    var_x = F.conv2d(x * x, w) - mu_x**2
    var_y = F.conv2d(y * y, w) - mu_y**2
    cov = F.conv2d(x * y, w) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return float((num / den).mean())


@dataclass(frozen=True)
class Score:
    psnr_y: float
    ssim_y: float
    grid_index: float = 0.0  # of the SR image (see grid_index)
    detail: float = 0.0  # high-pass energy of SR over HR's
    colour: tuple[float, float, float] = (0.0, 0.0, 0.0)  # mean SR - HR per RGB channel, levels


def score_y(sr: np.ndarray, hr: np.ndarray, *, border: int = 4) -> Score:
    """PSNR-Y, SSIM-Y (`border` px shaved), grid index, detail and colour shift of SR against HR."""
    if sr.shape != hr.shape:
        raise ValueError(f"SR {sr.shape} and HR {hr.shape} differ in size")
    y_sr, y_hr = shave(rgb_to_y(sr), border), shave(rgb_to_y(hr), border)
    return Score(
        psnr(y_sr, y_hr), ssim(y_sr, y_hr), grid_index(sr), detail(sr, hr), colour_shift(sr, hr)
    )


def mean_score(scores: list[Score]) -> Score:
    """The mean of each measure over images (the literature's way: per image, then averaged)."""
    colour = np.mean([s.colour for s in scores], axis=0)
    return Score(
        float(np.mean([s.psnr_y for s in scores])),
        float(np.mean([s.ssim_y for s in scores])),
        float(np.mean([s.grid_index for s in scores])),
        float(np.mean([s.detail for s in scores])),
        (float(colour[0]), float(colour[1]), float(colour[2])),
    )


# -- the grid index: sub-pixel artifacts locked to the x4 phase ----------------------------------

_BLUR_1D = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0  # outer product / 256 in 2-D
GRID_BORDER = 8
GRID_PHASES = 4


def high_pass(y: np.ndarray) -> np.ndarray:
    """Y minus its 5x5 Gaussian blur ([1,4,6,4,1] outer product / 256, replicate padding)."""
    p = np.pad(y.astype(np.float64), 2, mode="edge")
    h, w = y.shape
    rows = sum(k * p[i : i + h, :] for i, k in enumerate(_BLUR_1D))
    blur = sum(k * rows[:, j : j + w] for j, k in enumerate(_BLUR_1D))
    return y - blur


def _residual(img: np.ndarray) -> np.ndarray:
    r = high_pass(rgb_to_y(img))[GRID_BORDER:-GRID_BORDER, GRID_BORDER:-GRID_BORDER]
    h, w = (r.shape[0] // GRID_PHASES) * GRID_PHASES, (r.shape[1] // GRID_PHASES) * GRID_PHASES
    return r[:h, :w]


def grid_index(img: np.ndarray) -> float:
    """How much of an image's high-pass energy is a pattern locked to the 4x4 sub-pixel phase.

    r = high-pass of Y, 8 px border cropped to a multiple of 4; m(i, j) = mean of r[i::4, j::4];
    sqrt(mean of m^2) / std(r). Natural images score 0.01-0.02; a visible dot grid 0.4 and more.
    """
    r = _residual(img)
    m = np.array([[r[i::GRID_PHASES, j::GRID_PHASES].mean() for j in range(4)] for i in range(4)])
    std = float(r.std())
    return float(np.sqrt(np.mean(m * m)) / std) if std > 0 else 0.0


def detail(sr: np.ndarray, hr: np.ndarray) -> float:
    """mean |r| of the output over mean |r| of the HR: how much texture came back (1 = all)."""
    ref = float(np.abs(_residual(hr)).mean())
    return float(np.abs(_residual(sr)).mean()) / ref if ref > 0 else 0.0


def colour_shift(sr: np.ndarray, hr: np.ndarray) -> tuple[float, float, float]:
    """Mean of (SR - HR) per RGB channel, in 8-bit levels: a model that tints the picture."""
    d = sr.astype(np.float64) - hr.astype(np.float64)
    if d.ndim == 2:
        return (float(d.mean()),) * 3
    return tuple(float(v) for v in d.reshape(-1, 3).mean(0))  # type: ignore[return-value]


def comb_index(rgb: np.ndarray, scale: int = 1) -> float:
    """How interlaced a picture looks: the mean of (Y[r] - Y[r-1]) * (Y[r] - Y[r+1]) where it is
    positive (a line that differs the same way from the lines above and below it: two fields of
    different instants woven together) over the mean squared difference of neighbouring lines.
    A progressive picture scores about 0, every line of a moving edge combed about 1 (0.93 for a
    bar moving 3 pixels a field). `scale`: the picture is the source upscaled that many times,
    whose comb teeth are `scale` lines tall: one line in `scale` (from each tooth's middle) is
    measured."""
    y = np.asarray(rgb, dtype=np.float64)
    if y.ndim == 3:
        y = y[..., :3] @ np.array([0.299, 0.587, 0.114])
    y = y[scale // 2 :: scale]
    if y.shape[0] < 3:
        return 0.0
    up, mid, down = y[:-2], y[1:-1], y[2:]
    combed = np.maximum((mid - up) * (mid - down), 0.0).mean()
    steps = ((y[1:] - y[:-1]) ** 2).mean()
    return float(combed / steps) if steps > 0 else 0.0
