"""Benchmark folders (Set5 layout) and scoring a network on them: `vidsr eval` and validation.

A folder holds `NAME_HR.png` + `NAME_LR.png` pairs, or HR images alone; a missing LR is made with
the MATLAB-compatible imresize, the way the distributed LR files were made. HR is mod-cropped to
`scale` first so that SR and HR line up pixel for pixel. `degrade_pairs` damages the LR (the
distributed file or ours) the way `vidsr eval --degrade SPEC` asks.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..errors import InputError
from ..train.degrade import name_seed
from ..upscale.engine import Engine
from .imresize import imresize, mod_crop
from .metrics import Score, mean_score, score_y

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
MIN_LR = 8  # LR pixels a side at least: below that there is nothing left after the 4-px shave


@dataclass(frozen=True)
class BenchmarkPair:
    name: str
    hr: np.ndarray  # (H, W, 3) uint8, H and W multiples of the scale
    lr: np.ndarray  # (H/scale, W/scale, 3) uint8


def read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))  # a writable copy: torch.from_numpy wants one


def load_benchmark(
    folder: Path, *, scale: int = 4, notes: list[str] | None = None
) -> list[BenchmarkPair]:
    """The folder's (HR, LR) pairs at `scale`. An `NAME_LR` file made for another scale (Set5's
    x4 files and a 2x model) is not used: that LR is made from the HR, and `notes` says so."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"benchmark folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    hr_files = [p for p in files if p.stem.upper().endswith("_HR")]
    if not hr_files:  # a plain folder of images: every image is an HR image
        hr_files = [p for p in files if not p.stem.upper().endswith("_LR")]
    if not hr_files:
        raise InputError(f"no images in {folder} (expected NAME_HR.png [+ NAME_LR.png] files)")
    pairs, made, unreadable, small = [], 0, [], []
    for hr_path in hr_files:
        stem = hr_path.stem[:-3] if hr_path.stem.upper().endswith("_HR") else hr_path.stem
        lr_path = next((p for p in files if p.stem.upper() == f"{stem}_LR".upper()), None)
        try:
            hr = read_rgb(hr_path)
            lr = read_rgb(lr_path) if lr_path is not None else None
        except (OSError, ValueError, Image.DecompressionBombError):  # not an image, truncated
            unreadable.append(hr_path.name)
            continue
        if min(hr.shape[:2]) < MIN_LR * scale:
            small.append(hr_path.name)
            continue
        if lr is not None and _fits(hr, lr, scale):
            hr = hr[: lr.shape[0] * scale, : lr.shape[1] * scale]
        else:
            made += lr is not None
            hr = mod_crop(hr, scale)
            lr = imresize(hr, 1 / scale)
        pairs.append(BenchmarkPair(stem, hr, lr))
    skipped = [f"{len(unreadable)} unreadable ({', '.join(unreadable)})"] if unreadable else []
    if small:
        skipped.append(f"{len(small)} under {MIN_LR * scale} px ({', '.join(small)})")
    if not pairs:
        raise InputError(f"no usable images in {folder}: {' and '.join(skipped)}")
    if skipped and notes is not None:
        notes.append(f"skipped {' and '.join(skipped)}")
    if made and notes is not None:
        notes.append(
            f"the LR files in {folder.name} are not x{scale}: the x{scale} LR of {made} image(s) "
            "was made from the HR (MATLAB-compatible bicubic, as the benchmarks were)"
        )
    return pairs


def _fits(hr: np.ndarray, lr: np.ndarray, scale: int) -> bool:
    """An LR file made for `scale`: HR is its size times scale, up to the mod-crop remainder."""
    pairs = zip(hr.shape[:2], lr.shape[:2], strict=True)
    return all(0 <= h - lo * scale < scale for h, lo in pairs)


def degrade_pairs(
    pairs: list[BenchmarkPair], degrade: Callable[[np.ndarray, np.random.Generator], np.ndarray]
) -> list[BenchmarkPair]:
    """Every LR through `degrade`, with a generator seeded from the image's name: the same
    image gets the same damage on every run, whatever else is in the folder."""
    return [
        dataclasses.replace(p, lr=degrade(p.lr, np.random.default_rng(name_seed(p.name))))
        for p in pairs
    ]


def inference_engine(model: nn.Module, *, device: str = "cpu", precision: str = "fp32") -> Engine:
    """A copy in an Engine: Engine folds BatchNorm in place, a training model must not."""
    return Engine(copy.deepcopy(model), device=device, precision=precision)


def score_pairs(
    engine: Engine, pairs: list[BenchmarkPair], *, border: int = 4
) -> Iterator[tuple[BenchmarkPair, np.ndarray, Score]]:
    """(pair, SR image, score) per image; one image at a time, since benchmark sizes differ."""
    for pair in pairs:
        sr = engine(torch.from_numpy(np.ascontiguousarray(pair.lr))[None])[0].cpu().numpy()
        yield pair, sr, score_y(sr, pair.hr, border=border)


__all__ = [
    "BenchmarkPair",
    "degrade_pairs",
    "inference_engine",
    "load_benchmark",
    "mean_score",
    "score_pairs",
]
