"""The generator's and discriminator's losses.

SRGAN (Ledig et al. 2017, equations 3-6): content MSE on VGG features scaled by 1/12.75, which
brings the VGG loss to the order of the pixel MSE, and BCE on logits for the adversarial terms.
ESRGAN (Wang et al. 2018) adds the relativistic average GAN and an L1 pixel term. The grid loss
is ours: it holds the per-phase mean of the output's high-pass to the HR's, the quantity the
grid index (vidsr.quality.metrics) measures.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

VGG_RESCALE = 1.0 / 12.75
PIXEL_LOSSES = ("mse", "l1", "charbonnier")
GAN_LOSSES = ("bce", "ragan")


def pixel_loss(kind: str, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    d = sr.float() - hr.float()
    if kind == "mse":
        return d.square().mean()
    if kind == "l1":
        return d.abs().mean()
    if kind == "charbonnier":
        return torch.sqrt(d.square() + 1e-6).mean()
    raise ValueError(f"unknown pixel loss {kind!r}; choose from {', '.join(PIXEL_LOSSES)}")


class ContentLoss(nn.Module):
    def __init__(self, features: nn.Module):
        super().__init__()
        self.features = features

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.features(hr) * VGG_RESCALE
        return F.mse_loss(self.features(sr) * VGG_RESCALE, target)


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def generator_adversarial(
    fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None, *, kind: str = "bce"
) -> torch.Tensor:
    """bce: -log D(G(LR)), the paper's non-saturating form. ragan: ESRGAN's symmetric form."""
    if kind == "bce":
        return _bce(fake_logits, 1.0)
    if real_logits is None:
        raise ValueError("the relativistic loss needs the real logits")
    real = real_logits.detach()
    return 0.5 * (_bce(real - fake_logits.mean(), 0.0) + _bce(fake_logits - real.mean(), 1.0))


def discriminator_loss(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, *, kind: str = "bce"
) -> torch.Tensor:
    if kind == "bce":
        return _bce(real_logits, 1.0) + _bce(fake_logits, 0.0)
    return 0.5 * (
        _bce(real_logits - fake_logits.mean(), 1.0) + _bce(fake_logits - real_logits.mean(), 0.0)
    )


_LUMA = (65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0)  # BT.601, as vidsr.quality.metrics


def phase_means(img: torch.Tensor, *, phases: int = 4, border: int = 8) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> (N, phases, phases): mean high-pass of Y per sub-pixel phase,
    divided by the image's high-pass RMS. The grid index is the RMS of this over the phases."""
    w = img.new_tensor(_LUMA).view(1, 3, 1, 1)
    y = (img.float() * w).sum(1, keepdim=True)
    k1 = img.new_tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
    k = (k1[:, None] * k1[None, :]).view(1, 1, 5, 5)
    r = y - F.conv2d(F.pad(y, (2, 2, 2, 2), mode="replicate"), k)
    r = r[..., border:-border, border:-border]
    h = (r.shape[-2] // phases) * phases
    wd = (r.shape[-1] // phases) * phases
    r = r[..., :h, :wd]
    n = r.shape[0]
    m = r.reshape(n, h // phases, phases, wd // phases, phases).mean(dim=(1, 3))
    rms = r.reshape(n, -1).square().mean(1).add(1e-8).sqrt()
    return m / rms.view(n, 1, 1)


def lowpass_loss(sr: torch.Tensor, hr: torch.Tensor, *, factor: int = 4) -> torch.Tensor:
    """L1 of the 4x average-pooled images: the colour and brightness a GAN may drift on, with no
    say over the texture inside each 4x4 block (that is the content and adversarial terms')."""
    return F.l1_loss(F.avg_pool2d(sr.float(), factor), F.avg_pool2d(hr.float(), factor))


def grid_loss(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Squared distance of SR's normalised phase means from HR's: 0 when SR has no more of a
    phase-locked pattern than the HR, about grid_index^2 for a grid the HR does not have."""
    return (phase_means(sr) - phase_means(hr).detach()).square().mean()
