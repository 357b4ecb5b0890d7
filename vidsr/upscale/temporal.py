"""`--temporal`: a stabiliser for any model's video, applied to the frames it has upscaled.

A per-frame model adds detail (its residual: SR minus the bicubic of the LR) that is decided
anew on every frame, so texture and compression damage shimmer from frame to frame where the
picture stands still. The stabiliser keeps the bicubic part as it is and smooths only the
residual along the motion:

    r_t  = SR_t - bicubic(LR_t)
    r~_t = r_t + c_t * (warp(r~_t-1) - r_t)        out_t = bicubic(LR_t) + r~_t

`warp` follows the motion from frame t back to frame t-1, estimated with OpenCV's DIS optical
flow on the small LR frames and scaled up; where no motion explains the LR as well as the flow
does, there is none (a still picture keeps its residual in place instead of following the
flow's sub-pixel noise). `c_t` is `strength` where that motion is trusted and falls to 0 where
the LR, moved along it, does not match this frame's LR (occlusions, new content, lighting,
flow errors: a 3-level mismatch leaves a third of the trust). So a moving edge takes its own
frame's residual and is not smeared, while a still or tracked region averages its residual
over about (1 + s) / (1 - s) frames. (A forward-backward check of the flow was tried too: on
the shared clips it changed no measure by more than 0.01, at the cost of a second flow.)

All of it in OpenCV, on strips of output rows that stay in the cache; on a CPU the pipeline
runs it between the network's batches, on a GPU beside them (vidsr.upscale.pipeline).

The state starts afresh at a scene cut (most of the frame untrusted, or a large warped
difference) and every `reset_every` frames from where reading started: a segmented run starts
afresh at each segment seam, which is what keeps a resumed output equal to an unbroken one (the
resumed run starts reading at a seam, with nothing carried over).

Strength 0 gives the model's frames exactly; `--temporal auto` is vidsr.config.AUTO_TEMPORAL,
for every model (README, Steady video, has the measurements behind it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

SIGMA_PHOTO = 3.0  # grey levels (of 255) of warped-LR mismatch at which trust falls to 1/e
STILL_MARGIN = 0.5  # grey levels: how much better the flow must explain a pixel than no motion
CUT_TRUSTED = 0.3  # a frame with less than this share of trusted pixels starts afresh
CUT_LEVEL = 30.0  # ... or with a mean warped-LR mismatch over this many levels
STRIP_PIXELS = 1 << 15  # output pixels a strip of work holds (about 400 KB per float copy)


@dataclass
class _State:
    grey: np.ndarray  # (h, w) uint8 LR luma of the previous frame
    residual: np.ndarray  # (H, W, 3) float32 stabilised residual of the previous frame


class Stabiliser:
    """Stabilise upscaled frames in order, in place: `stabiliser(lr, sr)` for each batch.

    `lr`: (n, h, w, 3) uint8 or uint16 frames the network saw; `sr`: (n, H, W, 3) of the same
    type, what it made of them (any output size: --outscale too). `reset_every` > 0 starts
    afresh every that many frames from the first one given (segment seams)."""

    def __init__(self, strength: float, *, reset_every: int = 0):
        self.strength = float(strength)
        self.reset_every = int(reset_every)
        self.frames = 0  # frames seen
        self.cuts = 0  # scene cuts found (fresh starts other than seams)
        self._state: _State | None = None
        self._grids: dict[tuple, Any] = {}  # coordinates and strips by picture size
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)

    def _grid(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (x, y) of an h x w picture, kept between frames."""
        grid = self._grids.get((h, w))
        if grid is None:
            grid = self._grids[(h, w)] = tuple(
                np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
            )
        return grid

    def _strips(self, H: int, W: int) -> list[tuple[int, int]]:
        """The output's rows cut into strips: the work goes strip by strip so that it stays in
        the cache (a 4x frame's float copies are tens of MB each, and memory, not arithmetic,
        was what it waited for)."""
        rows = max(4, STRIP_PIXELS // W)
        return [(y, min(H, y + rows)) for y in range(0, H, rows)]

    def _coords(self, H: int, W: int) -> np.ndarray:
        """(H, W, 2) float32 pixel coordinates (x, y), kept between frames."""
        grid = self._grids.get((H, W))
        if grid is None:
            grid = self._grids[(H, W)] = np.dstack(self._grid(H, W))
        return grid

    def reset(self) -> None:
        self._state = None

    def __call__(self, lr: np.ndarray, sr: np.ndarray) -> np.ndarray:
        for k in range(len(lr)):
            self.frame(lr[k], sr[k])
        return sr

    def frame(self, lr: np.ndarray, sr: np.ndarray) -> np.ndarray:
        """Stabilise one frame `sr` (made from `lr`) in place, and return it."""
        if self.reset_every and self.frames % self.reset_every == 0:
            self._state = None
        self.frames += 1
        if self.strength <= 0:
            return sr
        lr = np.ascontiguousarray(lr)
        grey = cv2.cvtColor(lr if lr.dtype == np.uint8 else (lr >> 8).astype(np.uint8),
                            cv2.COLOR_RGB2GRAY)  # fmt: skip
        (h, w), (H, W) = grey.shape, sr.shape[:2]
        # The bicubic of the LR, at the LR's own depth: it is only the reference the residual
        # is taken from, and where nothing changes, base + residual is the model's frame again.
        base = cv2.resize(lr, (W, H), interpolation=cv2.INTER_CUBIC)
        state, trust, flow = self._state, None, None
        if state is not None:
            trust, flow = self._trust(grey, state.grey)
            if trust is None:
                self.cuts += 1
            else:  # where each output pixel was in the previous frame, and how far to trust it
                flow *= np.array([W / w, H / h], np.float32)
                flow = cv2.add(cv2.resize(flow, (W, H)), self._coords(H, W))
                keep = cv2.resize(1.0 - trust, (W, H))  # weights of this frame's residual
                trust = cv2.resize(trust, (W, H))
        depth = cv2.CV_8U if sr.dtype == np.uint8 else cv2.CV_16U
        residual = np.empty((H, W, 3), np.float32)
        for y0, y1 in self._strips(H, W):
            out, r, b = sr[y0:y1], residual[y0:y1], base[y0:y1]
            cv2.subtract(out, b, dst=r, dtype=cv2.CV_32F)
            if trust is None:
                continue
            before = cv2.remap(state.residual, flow[y0:y1], None, cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
            # r + c (before - r), as weights (1 - c) and c of the two
            cv2.blendLinear(r, before, keep[y0:y1], trust[y0:y1], dst=r)
            # rounded to the nearest level and clipped to the type's range, in place
            cv2.add(b, r, dst=out, dtype=depth)
        self._state = _State(grey, residual)
        return sr

    def _trust(self, grey: np.ndarray, prev: np.ndarray):
        """Per LR pixel of this frame: how far to trust the motion back to the previous frame
        (strength at best), and that motion; (None, None) at a scene cut."""
        back = self._dis.calc(grey, prev, None)  # where each pixel of this frame was before
        h, w = grey.shape
        gx, gy = self._grid(h, w)
        g, p = grey.astype(np.float32), prev.astype(np.float32)
        mx, my = gx + back[..., 0], gy + back[..., 1]
        prev_at = cv2.remap(p, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        # Where standing still explains the picture as well as the flow does, stand still: the
        # flow's sub-pixel noise on a still picture would move (and blur) its residual.
        err_flow = cv2.blur(np.abs(g - prev_at), (3, 3))
        err_still = cv2.blur(np.abs(g - p), (3, 3))
        still = err_still <= err_flow + STILL_MARGIN
        back[still] = 0
        mx[still], my[still] = gx[still], gy[still]
        prev_at[still] = p[still]
        photo = np.abs(g - prev_at)
        inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
        trust = np.exp(-((photo / SIGMA_PHOTO) ** 2)) * inside
        if float(np.mean(trust > 0.5)) < CUT_TRUSTED or float(np.mean(photo)) > CUT_LEVEL:
            return None, None
        return (self.strength * trust).astype(np.float32), back


__all__ = ["Stabiliser"]
