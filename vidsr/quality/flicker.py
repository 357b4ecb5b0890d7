"""Steadiness between frames: `vidsr eval --video CLIP`.

A clip's frames are the truth (HR); each is shrunk with MATLAB's antialiased bicubic (the SR
benchmarks' LR), optionally damaged as one video (`--degrade`, vidsr.train.degrade.degrade_clip),
and upscaled by each model, with and without the stabiliser (vidsr.upscale.temporal). Every
measure is on BT.601 luma (Y, 16-235) with `border` pixels shaved, over the frame pairs
(t, t+1) of the clip:

- psnr_y, ssim_y: per frame, averaged (as `vidsr eval` on images).
- tmse: mean of ((SR_t+1 - SR_t) - (HR_t+1 - HR_t))^2: how far the change between frames is
  from the truth's change (0: it changes exactly as the truth does).
- static_flicker: mean |SR_t+1 - SR_t| where the truth stands still (|HR_t+1 - HR_t| < 1 level
  everywhere in a 5x5 window): change that nothing in the picture called for.
- warp_error: mean (SR_t+1 - warp(SR_t))^2 where warp follows the truth's motion (Farneback
  optical flow on HR, OpenCV) and the forward and backward flows agree (Sundaram et al.'s
  check): change along the motion, which the eye sees as shimmer on moving texture.

Flicker and warping error are also given as ratios to bicubic's on the same LR: 1.0 is as
steady as bicubic, which adds no detail of its own to flicker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from ..errors import InputError
from .imresize import imresize, mod_crop
from .metrics import psnr, rgb_to_y, shave, ssim

STILL_LEVEL = 1.0  # grey levels: the truth "stands still" below this
STILL_WINDOW = 5  # ... everywhere in a window this wide


@dataclass(frozen=True)
class Motion:
    """What the truth does between frames t and t+1, computed once per clip."""

    still: np.ndarray  # (n-1, H, W) bool: the truth stands still there
    flow: np.ndarray  # (n-1, H, W, 2) float32: frame t+1 back to frame t (Farneback on HR)
    valid: np.ndarray  # (n-1, H, W) bool: forward and backward flows agree, inside the frame


@dataclass(frozen=True)
class ClipScore:
    psnr_y: float
    ssim_y: float
    tmse: float
    static_flicker: float
    warp_error: float
    static_ratio: float = float("nan")  # to bicubic's; filled by with_ratios
    warp_ratio: float = float("nan")

    def with_ratios(self, bicubic: ClipScore) -> ClipScore:
        return ClipScore(
            self.psnr_y, self.ssim_y, self.tmse, self.static_flicker, self.warp_error,
            _ratio(self.static_flicker, bicubic.static_flicker),
            _ratio(self.warp_error, bicubic.warp_error),
        )  # fmt: skip

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else (1.0 if a == 0 else float("inf"))


def read_clip(path: Path, *, frames: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """The first `frames` frames of a video as (n, H, W, 3) uint8 RGB, centre-cropped to
    `size` (width, height) when given."""
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as e:
        raise InputError(f"{path}: cannot be read as a video ({e})") from None
    out = []
    with container:
        if not container.streams.video:
            raise InputError(f"{path}: no video stream")
        try:
            for frame in container.decode(video=0):
                out.append(frame.to_ndarray(format="rgb24"))
                if len(out) == frames:
                    break
        except av.FFmpegError as e:
            if not out:
                raise InputError(f"{path}: no frame could be decoded ({e})") from None
    if len(out) < 2:
        raise InputError(f"{path}: at least 2 frames are needed, it has {len(out)}")
    clip = np.stack(out)
    if size is not None:
        w, h = size
        H, W = clip.shape[1:3]
        if w > W or h > H:
            raise InputError(f"{path}: --size {w}x{h} is larger than the video ({W}x{H})")
        y, x = (H - h) // 2, (W - w) // 2
        clip = clip[:, y : y + h, x : x + w]
    return clip


def shrink(hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(HR mod-cropped to `scale`, its LR by MATLAB's bicubic) for a clip."""
    hr = np.stack([mod_crop(f, scale) for f in hr])
    return hr, np.stack([imresize(f, 1 / scale) for f in hr])


def bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    return np.stack([imresize(f, scale) for f in lr])


def luma(clip: np.ndarray, border: int) -> np.ndarray:
    return np.stack([shave(rgb_to_y(f), border) for f in clip]).astype(np.float32)


def motion(hr_y: np.ndarray) -> Motion:
    """Still regions and the truth's motion between consecutive frames of a luma clip."""
    k = np.ones((STILL_WINDOW, STILL_WINDOW), np.uint8)
    still, flows, valid = [], [], []
    grey = [np.clip(np.rint(y), 0, 255).astype(np.uint8) for y in hr_y]
    for t in range(len(hr_y) - 1):
        diff = np.abs(hr_y[t + 1] - hr_y[t])
        still.append(cv2.dilate(diff, k) < STILL_LEVEL)
        back = _farneback(grey[t + 1], grey[t])
        fwd = _farneback(grey[t], grey[t + 1])
        flows.append(back)
        valid.append(_consistent(back, fwd))
    return Motion(np.stack(still), np.stack(flows), np.stack(valid))


def _farneback(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 15, 3, 5, 1.2, 0)


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))


def _consistent(back: np.ndarray, fwd: np.ndarray) -> np.ndarray:
    """Where following `back` then `fwd` returns close to the start (Sundaram et al. 2010):
    |b + f(x + b)|^2 < 0.01 (|b|^2 + |f(x + b)|^2) + 0.5, and x + b inside the frame."""
    h, w = back.shape[:2]
    gx, gy = _grid(h, w)
    mx, my = gx + back[..., 0], gy + back[..., 1]
    f = cv2.remap(fwd, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    gap = np.sum((back + f) ** 2, axis=-1)
    ok = gap < 0.01 * (np.sum(back**2, axis=-1) + np.sum(f**2, axis=-1)) + 0.5
    return ok & (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)


def warp(y: np.ndarray, flow: np.ndarray) -> np.ndarray:
    h, w = y.shape
    gx, gy = _grid(h, w)
    return cv2.remap(y, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)  # fmt: skip


def score_clip(sr_y: np.ndarray, hr_y: np.ndarray, m: Motion) -> ClipScore:
    """The measures of a luma clip against the truth's (see the module's docstring)."""
    if sr_y.shape != hr_y.shape:
        raise ValueError(f"SR {sr_y.shape} and HR {hr_y.shape} differ in size")
    p = [psnr(a, b) for a, b in zip(sr_y, hr_y, strict=True)]
    s = [ssim(a, b) for a, b in zip(sr_y, hr_y, strict=True)]
    d_sr, d_hr = np.diff(sr_y, axis=0), np.diff(hr_y, axis=0)
    tmse = float(np.mean((d_sr - d_hr) ** 2))
    still = float(np.abs(d_sr)[m.still].mean()) if m.still.any() else 0.0
    errors = [
        (sr_y[t + 1] - warp(sr_y[t], m.flow[t]))[m.valid[t]] ** 2 for t in range(len(sr_y) - 1)
    ]
    flat = np.concatenate(errors)
    return ClipScore(
        float(np.mean(p)), float(np.mean(s)), tmse, still,
        float(flat.mean()) if flat.size else 0.0,
    )  # fmt: skip


@dataclass(frozen=True)
class Row:
    label: str  # "bicubic", "fast", "fast + temporal 0.8"
    model: str
    temporal: str
    score: ClipScore


def flicker_rows(
    hr: np.ndarray,
    lr: np.ndarray,
    scale: int,
    runs: Iterable[tuple[str, str, Callable[[np.ndarray], np.ndarray]]],
    *,
    border: int = 4,
    keep: Callable[[str, np.ndarray], None] | None = None,
) -> list[Row]:
    """Bicubic's row, then one per (model, temporal, upscale) of `runs`; `upscale(lr)` gives
    the SR clip. `keep(label, sr)` sees each SR clip (for the picture)."""
    hr_y = luma(hr, border)
    m = motion(hr_y)
    base = bicubic(lr, scale)
    if keep is not None:
        keep("bicubic", base)
    ref = score_clip(luma(base, border), hr_y, m)
    rows = [Row("bicubic", "bicubic", "-", ref.with_ratios(ref))]
    for model, temporal, upscale in runs:
        sr = upscale(lr)
        if sr.shape != hr.shape:
            raise InputError(f"{model} gave {sr.shape[2]}x{sr.shape[1]}, not the clip's size")
        label = model if temporal == "off" else f"{model} + temporal {temporal}"
        if keep is not None:
            keep(label, sr)
        rows.append(Row(label, model, temporal, score_clip(luma(sr, border), hr_y, m)
                        .with_ratios(ref)))  # fmt: skip
    return rows


def difference_picture(
    hr: np.ndarray, clips: dict[str, np.ndarray], t: int, path: Path, *, gain: float = 16.0
) -> None:
    """A picture of |Y_t+1 - Y_t| (times `gain`) for the truth and each clip, side by side and
    labelled: flicker shows as texture where the truth's map is black."""
    from PIL import Image, ImageDraw

    tiles = [("truth (HR)", hr)] + list(clips.items())
    maps = []
    for label, clip in tiles:
        y = rgb_to_y(clip[t + 1]) - rgb_to_y(clip[t])
        img = Image.fromarray(np.clip(np.abs(y) * gain, 0, 255).astype(np.uint8)).convert("RGB")
        ImageDraw.Draw(img).text((6, 4), label, fill=(255, 200, 0))
        maps.append(img)
    h, w = maps[0].height, maps[0].width
    cols = 2 if len(maps) > 3 else len(maps)
    rows = -(-len(maps) // cols)
    sheet = Image.new("RGB", (cols * w + (cols - 1) * 4, rows * h + (rows - 1) * 4), (40, 40, 40))
    for k, img in enumerate(maps):
        sheet.paste(img, ((k % cols) * (w + 4), (k // cols) * (h + 4)))
    sheet.save(path)


__all__ = ["ClipScore", "Motion", "Row", "difference_picture", "flicker_rows", "motion",
           "read_clip", "score_clip", "shrink"]  # fmt: skip
