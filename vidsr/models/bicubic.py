"""Parameter-free bicubic upscaling with a = -0.5 (the kernel MATLAB's imresize and PIL use).

torch's own bicubic uses a = -0.75, so this is a fixed convolution: each output phase (i, j) of
the s x s grid is a 5x5 kernel over the symmetrically padded input, then PixelShuffle interleaves.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def cubic(x: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    x = x.abs()
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return torch.where(x <= 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def _phase_taps(scale: int) -> torch.Tensor:
    """(scale, 5): weights of input taps k-2..k+2 for output pixel scale*k + p."""
    p = torch.arange(scale, dtype=torch.float64)
    offset = (p + 0.5) / scale - 0.5  # where output phase p sits, relative to input pixel k
    taps = torch.arange(-2, 3, dtype=torch.float64)
    w = cubic(offset[:, None] - taps[None, :])
    return w / w.sum(dim=1, keepdim=True)


def symmetric_index(n: int, pad: int) -> torch.Tensor:
    """Indices that pad a length-n axis by `pad` mirrored samples (edge repeated), like MATLAB."""
    i = torch.arange(-pad, n + pad)
    i = torch.where(i < 0, -i - 1, i)
    i = torch.where(i >= n, 2 * n - 1 - i, i)
    return i.clamp(0, n - 1)


class Bicubic(nn.Module):
    receptive_radius = (
        2  # 5x5 taps, in input pixels (vidsr.upscale.tiling reads it: no Conv2d to count)
    )

    def __init__(self, *, scale: int = 4):
        super().__init__()
        self.scale = scale
        w = _phase_taps(scale)
        kernel = (w[:, None, :, None] * w[None, :, None, :]).reshape(scale * scale, 1, 5, 5)
        self.register_buffer("kernel", kernel.float(), persistent=False)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        x = x[:, :, symmetric_index(h, 2).to(x.device)][:, :, :, symmetric_index(w, 2).to(x.device)]
        weight = self.kernel.to(x.dtype).repeat(c, 1, 1, 1)  # (c*s*s, 1, 5, 5)
        y = F.conv2d(x, weight, groups=c)  # (N, c*s*s, H, W)
        return self.shuffle(y)  # (N, c, sH, sW)
