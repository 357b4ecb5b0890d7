"""A real-time x4 network for the CPU, in the spirit of ECBSR (Zhang, Zeng and Zhang 2021,
"Edge-oriented Convolution Block for Real-time Super Resolution on Mobile Devices").

While training, every layer is an edge-oriented convolution block (ECB): a 3x3 conv, a 1x1 conv
expanding to twice the channels then a 3x3 conv, and three 1x1 convs each followed by a fixed
depthwise Sobel-x, Sobel-y or Laplacian filter with a learnt scale and bias per channel (plus the
identity where input and output widths match). Every branch is linear, so the block is exactly one
3x3 convolution: `ECB.rep_params()` computes its kernel and bias, `RealTimeSR.fuse()` replaces
each block by that plain `nn.Conv2d` for inference, and a fused file loads into a fresh network
(it fuses itself first). The 1x1 outputs are padded with their own bias, not zeros, before the
3x3 filters, so the fold is exact at the borders too (ECBSR's trick).

Training runs each block as its folded convolution computed afresh from the branch parameters on
every step: the same function of the same parameters, so the same gradients as running the
branches one by one, at the cost of a single conv (`forward_branches` runs them one by one; the
tests check the two agree).

The network: head block 3 -> C, `blocks` body blocks C -> C, each followed by a PReLU, a tail block
C -> 3 * scale^2, plus the input upscaled by the bicubic kernel of vidsr.models.bicubic (a 5x5
filter per output phase), then one PixelShuffle(scale) (written channels_last, which the engine
reads without a copy). ECBSR adds the input repeated (nearest neighbour); bicubic costs about a
tenth of the network here and starts training from a better picture.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .bicubic import Bicubic, symmetric_index

SOBEL_X = ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0))
SOBEL_Y = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))
LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


def _pad_with(x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """x padded by one pixel on every side with a per-channel value (a 1x1 conv's bias)."""
    out = F.pad(x, (1, 1, 1, 1))
    v = value.view(1, -1, 1, 1)
    out[:, :, :1, :] = v
    out[:, :, -1:, :] = v
    out[:, :, :, :1] = v
    out[:, :, :, -1:] = v
    return out


def pixel_shuffle_nhwc(x: torch.Tensor, r: int) -> torch.Tensor:
    """nn.PixelShuffle(r)'s values, (N, C * r^2, H, W) -> (N, C, rH, rW), written channels_last:
    one copy from the convs' channels_last output straight into the NHWC order the engine turns
    into frames (nn.PixelShuffle's output there costs another pass)."""
    n, c, h, w = x.shape
    y = x.permute(0, 2, 3, 1).reshape(n, h, w, c // (r * r), r, r).permute(0, 1, 4, 2, 5, 3)
    return y.reshape(n, h * r, w * r, c // (r * r)).permute(0, 3, 1, 2)


class EdgeBranch(nn.Module):
    """1x1 conv, then a fixed depthwise 3x3 filter with a learnt scale and bias per channel."""

    def __init__(self, cin: int, cout: int, mask: tuple[tuple[float, ...], ...]):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1)
        self.scale = nn.Parameter(torch.randn(cout) * 1e-3)
        self.bias = nn.Parameter(torch.randn(cout) * 1e-3)
        self.register_buffer("mask", torch.tensor(mask), persistent=False)

    def rep_params(self) -> tuple[torch.Tensor, torch.Tensor]:
        w0, b0 = self.conv.weight[:, :, 0, 0], self.conv.bias  # (cout, cin), (cout,)
        k = self.scale[:, None, None, None] * self.mask * w0[:, :, None, None]
        return k, self.bias + self.scale * self.mask.sum() * b0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _pad_with(self.conv(x), self.conv.bias)
        w = (self.scale[:, None, None] * self.mask)[:, None]  # (cout, 1, 3, 3)
        return F.conv2d(y, w, self.bias, groups=y.shape[1])


class ECB(nn.Module):
    """An edge-oriented convolution block: five linear branches (and the identity) that fold
    into one 3x3 convolution."""

    def __init__(self, cin: int, cout: int, *, multiplier: float = 2.0):
        super().__init__()
        self.cin, self.cout = cin, cout
        mid = int(cout * multiplier)
        self.conv3 = nn.Conv2d(cin, cout, 3, padding=1)
        self.expand = nn.Conv2d(cin, mid, 1)
        self.squeeze = nn.Conv2d(mid, cout, 3)  # on the bias-padded 1x1 output
        self.sobel_x = EdgeBranch(cin, cout, SOBEL_X)
        self.sobel_y = EdgeBranch(cin, cout, SOBEL_Y)
        self.laplacian = EdgeBranch(cin, cout, LAPLACIAN)
        self.identity = cin == cout

    def rep_params(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The (cout, cin, 3, 3) kernel and (cout,) bias of the one conv this block equals."""
        k = self.conv3.weight
        b = self.conv3.bias
        w0, b0 = self.expand.weight[:, :, 0, 0], self.expand.bias  # (mid, cin), (mid,)
        w1, b1 = self.squeeze.weight, self.squeeze.bias  # (cout, mid, 3, 3)
        k = k + torch.einsum("omhw,mi->oihw", w1, w0)
        b = b + b1 + (w1 * b0[None, :, None, None]).sum(dim=(1, 2, 3))
        for branch in (self.sobel_x, self.sobel_y, self.laplacian):
            kb, bb = branch.rep_params()
            k, b = k + kb, b + bb
        if self.identity:
            eye = torch.zeros_like(k)
            eye[torch.arange(self.cout), torch.arange(self.cin), 1, 1] = 1.0
            k = k + eye
        return k, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, b = self.rep_params()
        return F.conv2d(x, k.to(x.dtype), b.to(x.dtype), padding=1)

    def forward_branches(self, x: torch.Tensor) -> torch.Tensor:
        """The branches one by one and summed: what `forward` folds into one conv."""
        y = self.conv3(x) + self.squeeze(_pad_with(self.expand(x), self.expand.bias))
        y = y + self.sobel_x(x) + self.sobel_y(x) + self.laplacian(x)
        return y + x if self.identity else y

    def fused(self) -> nn.Conv2d:
        conv = nn.Conv2d(self.cin, self.cout, 3, padding=1)
        with torch.no_grad():
            k, b = self.rep_params()
            conv.weight.copy_(k)
            conv.bias.copy_(b)
        return conv


class RealTimeSR(nn.Module):
    """head ECB + `blocks` ECBs of `channels` (PReLU after each) + tail ECB to 3 * scale^2,
    PixelShuffle(scale), plus the bicubic upscale of the input. RGB in [0, 1] in and out."""

    def __init__(self, *, blocks: int = 4, channels: int = 16, scale: int = 4):
        super().__init__()
        self.scale = scale
        widths = [3] + [channels] * (blocks + 1) + [3 * scale * scale]
        self.layers = nn.ModuleList(ECB(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.acts = nn.ModuleList(nn.PReLU(channels) for _ in range(blocks + 1))
        with torch.no_grad():  # start at the bicubic upscale: the tail's residual begins small
            for p in self.layers[-1].parameters():
                p.mul_(0.1)
        bicubic = Bicubic(scale=scale)
        self.register_buffer("upscale_kernel", bicubic.kernel.repeat(3, 1, 1, 1), persistent=False)
        # vidsr.upscale.tiling's reach counts every nn.Conv2d: at least one pixel per layer (two
        # before fusing), never less than the bicubic taps' two.
        self.is_fused = False

    def _bicubic(self, x: torch.Tensor) -> torch.Tensor:
        """The bicubic upscale before its PixelShuffle: (N, 3 * scale^2, H, W)."""
        _, _, h, w = x.shape
        x = x[:, :, symmetric_index(h, 2).to(x.device)][:, :, :, symmetric_index(w, 2).to(x.device)]
        return F.conv2d(x, self.upscale_kernel.to(x.dtype), groups=3)

    def _run(self, x: torch.Tensor, branches: bool) -> torch.Tensor:
        y = x
        for i, layer in enumerate(self.layers):
            y = layer.forward_branches(y) if branches else layer(y)
            if i < len(self.acts):
                y = self.acts[i](y)
        return pixel_shuffle_nhwc(y.add_(self._bicubic(x)), self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, branches=False)  # (N, 3, H, W) -> (N, 3, sH, sW)

    def forward_branches(self, x: torch.Tensor) -> torch.Tensor:
        """The training form, every branch run on its own (for tests; not fused yet)."""
        if self.is_fused:
            raise RuntimeError("the network is fused: its branches are gone")
        return self._run(x, branches=True)

    @torch.no_grad()
    def fuse(self) -> RealTimeSR:
        """Fold every block into its one 3x3 conv, in place (for inference); returns self."""
        if not self.is_fused:
            for i, layer in enumerate(self.layers):
                self.layers[i] = layer.fused().to(layer.conv3.weight.device)
            self.is_fused = True
        return self

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Either form: a fused file (one conv per layer, what ships) fuses this network first."""
        if not self.is_fused and "layers.0.weight" in state_dict:
            self.fuse()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


__all__ = ["ECB", "EdgeBranch", "RealTimeSR"]
