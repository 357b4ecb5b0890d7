"""The generator's and discriminator's losses (Ledig et al. 2017, equations 3-6).

Content on VGG features: MSE of phi(SR) and phi(HR), features scaled by 1/12.75 as in the paper,
which brings the VGG loss to the order of the pixel MSE. Adversarial: BCE on logits.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

VGG_RESCALE = 1.0 / 12.75


class ContentLoss(nn.Module):
    def __init__(self, features: nn.Module):
        super().__init__()
        self.features = features

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.features(hr) * VGG_RESCALE
        return F.mse_loss(self.features(sr) * VGG_RESCALE, target)


def generator_adversarial(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(G(LR)): the non-saturating form the paper uses."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake
