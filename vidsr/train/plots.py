"""PNG outputs of a run without matplotlib: sample grids (LR | SR | HR) and loss / PSNR curves."""

from __future__ import annotations

import math

import torch
from PIL import Image, ImageDraw
from torch.nn import functional as F
from torchvision.utils import make_grid

COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14))


def sample_grid(
    lr: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor, *, rows: int = 4
) -> torch.Tensor:
    """One row per sample: LR (nearest-neighbour enlarged) | SR | HR, from uint8 NCHW tensors.

    A float (3, H, W) grid in [0, 1], as torchvision.utils.save_image takes it.
    """
    n = min(rows, lr.shape[0])
    lr_big = F.interpolate(lr[:n].float(), size=hr.shape[-2:], mode="nearest")
    tiles = torch.stack([lr_big, sr[:n].float(), hr[:n].float()], dim=1)  # (n, 3 tiles, 3, H, W)
    return make_grid(tiles.flatten(0, 1) / 255, nrow=3, padding=2)


def _fmt(v: float) -> str:
    return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.2e}"


def curve_image(
    series: dict[str, list[tuple[int, float]]], *, title: str, log_y: bool = False
) -> Image.Image:
    """A small line chart: steps on x, values on y (log10 when asked and all positive)."""
    w, h, left, right, top, bottom = 640, 360, 70, 20, 30, 40
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    draw.text((left, 8), title, fill="black")
    points = [(s, v) for pts in series.values() for s, v in pts if math.isfinite(v)]
    if not points:
        draw.text((w // 2 - 30, h // 2), "no data yet", fill="grey")
        return img
    log_y = log_y and all(v > 0 for _, v in points)
    ty = (lambda v: math.log10(v)) if log_y else (lambda v: v)
    xs = [s for s, _ in points]
    ys = [ty(v) for _, v in points]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - 0.5, y1 + 0.5
    px = lambda s: left + (s - x0) / (x1 - x0) * (w - left - right)  # noqa: E731
    py = lambda v: h - bottom - (v - y0) / (y1 - y0) * (h - top - bottom)  # noqa: E731
    draw.rectangle((left, top, w - right, h - bottom), outline="black")
    for i in range(5):
        yv = y0 + (y1 - y0) * i / 4
        y = py(yv)
        draw.line((left - 4, y, w - right, y), fill=(225, 225, 225))
        draw.text((4, y - 6), _fmt(10**yv if log_y else yv), fill="black")
        xv = x0 + (x1 - x0) * i / 4
        x = px(xv)
        draw.line((x, h - bottom, x, h - bottom + 4), fill="black")
        draw.text((x - 10, h - bottom + 8), str(int(round(xv))), fill="black")
    draw.text((w // 2 - 15, h - 16), "step", fill="black")
    for k, (name, pts) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        line = [(px(s), py(ty(v))) for s, v in pts if math.isfinite(v) and (v > 0 or not log_y)]
        if len(line) > 1:
            draw.line(line, fill=colour, width=2)
        elif line:
            x, y = line[0]
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
        draw.text((w - right - 120, top + 6 + 14 * k), name, fill=colour)
    return img


def curves_image(history: list[dict], *, keys: tuple[str, ...], title: str, **kw) -> Image.Image:
    """curve_image of the logged values `keys` against step."""
    series = {k: [(r["step"], r[k]) for r in history if k in r] for k in keys}
    series = {k: v for k, v in series.items() if v}
    return curve_image(series, title=title, **kw)


def stack_panels(images: list[Image.Image]) -> Image.Image:
    """Images one below the other, on a canvas as wide as the widest."""
    canvas = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)))
    y = 0
    for im in images:
        canvas.paste(im, (0, y))
        y += im.height
    return canvas


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()


__all__ = ["curve_image", "curves_image", "sample_grid", "stack_panels", "to_uint8"]
