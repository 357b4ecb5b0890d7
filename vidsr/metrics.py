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


def score_y(sr: np.ndarray, hr: np.ndarray, *, border: int = 4) -> Score:
    """PSNR-Y and SSIM-Y of an (H, W, 3) uint8 SR image against its HR, `border` px shaved."""
    if sr.shape != hr.shape:
        raise ValueError(f"SR {sr.shape} and HR {hr.shape} differ in size")
    y_sr, y_hr = shave(rgb_to_y(sr), border), shave(rgb_to_y(hr), border)
    return Score(psnr(y_sr, y_hr), ssim(y_sr, y_hr))
