"""SRResNet (Ledig et al. 2017, "Photo-Realistic Single Image Super-Resolution Using a GAN").

The SRGAN generator is this same network with its own weights. Input and output are RGB in [0, 1].
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """conv3x3-BN-PReLU-conv3x3-BN plus the identity."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.PReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)  # (N, C, H, W)


@torch.no_grad()
def icnr_(conv: nn.Conv2d, scale: int) -> None:
    """ICNR (Aitken et al. 2017): every group of scale^2 output channels that PixelShuffle
    interleaves starts identical, so a fresh sub-pixel conv upsamples like nearest neighbour
    instead of drawing a checkerboard that training must then unlearn."""
    out_c = conv.out_channels // (scale * scale)
    base = torch.empty(out_c, *conv.weight.shape[1:])
    nn.init.kaiming_normal_(base)
    conv.weight.copy_(base.repeat_interleave(scale * scale, dim=0))
    if conv.bias is not None:
        conv.bias.copy_(conv.bias.view(out_c, scale * scale)[:, :1].expand(-1, scale * scale)
                        .reshape(-1))  # fmt: skip


class SubPixelUpsample(nn.Module):
    """conv3x3 C -> 4C, PixelShuffle(2), PReLU: doubles height and width."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels * 4, 3, padding=1),
            nn.PixelShuffle(2),
            nn.PReLU(),
        )
        icnr_(self.body[0], 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (N, C, H, W) -> (N, C, 2H, 2W)


class SRResNet(nn.Module):
    """The paper's generator; `upsample="shuffle"` is the cheaper variant the fast model uses.

    "progressive" (the paper): a conv + PixelShuffle(2) per factor of two, then a 9x9 conv to RGB
    at full size. "shuffle" (ESPCN-style): one 3x3 conv to 3 * scale^2 channels and a single
    PixelShuffle(scale), so no conv runs at the output size (at 48 channels the upsampling and
    output stages cost about 29x fewer multiply-adds than the progressive ones).
    """

    def __init__(
        self,
        *,
        blocks: int = 16,
        channels: int = 64,
        scale: int = 4,
        upsample: str = "progressive",
    ):
        super().__init__()
        if scale < 2 or scale & (scale - 1):
            raise ValueError(f"scale must be a power of two >= 2, got {scale}")
        if upsample not in ("progressive", "shuffle"):
            raise ValueError(f"upsample must be 'progressive' or 'shuffle', got {upsample!r}")
        self.scale = scale
        self.head = nn.Sequential(nn.Conv2d(3, channels, 9, padding=4), nn.PReLU())
        self.blocks = nn.Sequential(*[ResidualBlock(channels) for _ in range(blocks)])
        self.trunk_tail = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels)
        )
        if upsample == "progressive":
            self.upsample = nn.Sequential(
                *[SubPixelUpsample(channels) for _ in range(int(math.log2(scale)))]
            )
            self.tail: nn.Module = nn.Conv2d(channels, 3, 9, padding=4)
        else:
            self.upsample = nn.Sequential(
                nn.Conv2d(channels, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale)
            )
            icnr_(self.upsample[0], scale)
            self.tail = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head(x)  # (N, 3, H, W) -> (N, C, H, W)
        trunk = self.trunk_tail(self.blocks(feat))  # (N, C, H, W)
        up = self.upsample(feat + trunk)  # (N, C, sH, sW); already (N, 3, sH, sW) for "shuffle"
        return self.tail(up)  # (N, 3, sH, sW)
