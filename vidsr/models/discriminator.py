"""The SRGAN discriminator (Ledig et al. 2017, figure 4): eight conv layers, two dense layers.

Returns one logit per image (use BCEWithLogits); adaptive pooling lets it take any crop >= 16 px.
"""

from __future__ import annotations

import torch
from torch import nn


class Discriminator(nn.Module):
    def __init__(self, *, channels: int = 64, blocks: int = 8, dense: int = 1024, pool: int = 6):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i in range(blocks):
            c_out = channels * 2 ** (i // 2)
            stride = 1 if i % 2 == 0 else 2
            layers.append(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * pool * pool, dense),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(dense, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.pool(self.features(x))  # (N, 3, H, W) -> (N, 8C, pool, pool)
        return self.classifier(f).squeeze(1)  # (N,)
