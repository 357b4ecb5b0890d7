"""Overlapping tiles for frames too large for memory, joined without seams.

Each tile is a core rectangle of the frame plus `pad` pixels of context on every side (clipped at
the frame border, where the network sees the frame's own border exactly as it would untiled). The
network runs on the padded tile and only the core of its output is kept ("crop the overlap", as
Real-ESRGAN's tile_pad does). With `pad` at least the network's receptive-field radius, every kept
output pixel saw exactly the pixels it sees in an untiled run, so the joined frame equals the
untiled one up to floating-point rounding: no seam to blend away.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn


def context_pixels(model: nn.Module, *, cap: int = 64) -> int:
    """An upper bound on the receptive-field radius in input pixels: sum of every conv's reach.

    Convolutions after an upsampling reach less than this counts (they work on a finer grid), so the
    sum over-estimates, which is the safe side. Capped: far context contributes nothing visible.
    """
    reach = 0
    for m in model.modules():
        reach += getattr(m, "receptive_radius", 0)  # networks built from functional convs say so
        if isinstance(m, nn.Conv2d):
            k, d = m.kernel_size, m.dilation
            reach += max(d[0] * (k[0] - 1), d[1] * (k[1] - 1)) // 2
    return min(reach, cap)


@dataclass(frozen=True)
class Tile:
    """Input rows [y0, y1) x cols [x0, x1) with context; core [cy0, cy1) x [cx0, cx1) is kept."""

    y0: int
    y1: int
    x0: int
    x1: int
    cy0: int
    cy1: int
    cx0: int
    cx1: int


def plan_tiles(height: int, width: int, tile: int, pad: int) -> Iterator[Tile]:
    """Cover an (height, width) frame with tile x tile cores, each with `pad` context pixels."""
    tile = max(1, tile)
    for cy0 in range(0, height, tile):
        cy1 = min(height, cy0 + tile)
        for cx0 in range(0, width, tile):
            cx1 = min(width, cx0 + tile)
            yield Tile(
                max(0, cy0 - pad),
                min(height, cy1 + pad),
                max(0, cx0 - pad),
                min(width, cx1 + pad),
                cy0,
                cy1,
                cx0,
                cx1,
            )


def upscale_tiled(
    run: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    scale: int,
    tile: int,
    pad: int,
) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, sH, sW) through `run` one padded tile at a time."""
    n, c, h, w = x.shape
    if tile >= h and tile >= w:
        return run(x)
    out: torch.Tensor | None = None
    s = scale
    for t in plan_tiles(h, w, tile, pad):
        y = run(x[:, :, t.y0 : t.y1, t.x0 : t.x1])  # (N, C, s*th, s*tw)
        if out is None:
            out = torch.empty(
                (n, y.shape[1], h * s, w * s),
                dtype=y.dtype,
                device=y.device,
                memory_format=torch.channels_last,
            )
        oy, ox = (t.cy0 - t.y0) * s, (t.cx0 - t.x0) * s
        out[:, :, t.cy0 * s : t.cy1 * s, t.cx0 * s : t.cx1 * s] = y[
            :, :, oy : oy + (t.cy1 - t.cy0) * s, ox : ox + (t.cx1 - t.cx0) * s
        ]
    assert out is not None
    return out
