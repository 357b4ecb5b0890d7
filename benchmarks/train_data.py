"""Seconds per training sample from the loader: decoded photos vs a prepared crop cache.

    python benchmarks/train_data.py PHOTOS_DIR CACHE_DIR [--samples 64]

`decoded`: PairDataset on the photo files with its in-process cache off (cache_mb=0), as a run
on more pictures than the cache holds (COCO) reads them; `decoded, cached`: the default 1 GiB
in-process cache, after one pass over the pictures; `prepared`: tiles of `vidsr train prepare`.
Crop 128, x4, hr_downscale 2 plus 3, as the shipped recipes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from vidsr.train.crops import open_crops
from vidsr.train.data import PairDataset, scan_images


def per_sample(ds: PairDataset, n: int, start: int = 0) -> float:
    t0 = time.perf_counter()
    for i in range(start, start + n):
        ds[(i * 7919) % len(ds), i]
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("photos", type=Path)
    ap.add_argument("cache", type=Path)
    ap.add_argument("--samples", type=int, default=64)
    a = ap.parse_args()
    files = scan_images([a.photos], min_size=256).images
    kw = dict(crop=128, scale=4, hr_downscale=2, extra_downscales=(3,))
    decoded = PairDataset(files, cache_mb=0, **kw)
    cached = PairDataset(files, **kw)
    for entry in range(len(cached)):  # one pass: everything decoded once
        cached._image(entry)
    prepared = PairDataset([], tiles=open_crops(a.cache), **kw)
    rows = [("decoded", per_sample(decoded, a.samples)),
            ("decoded, cached", per_sample(cached, a.samples)),
            ("prepared", per_sample(prepared, a.samples))]  # fmt: skip
    for name, s in rows:
        print(f"{name:<16} {s * 1000:8.1f} ms/sample  {s * 16:6.2f} s per batch of 16")


if __name__ == "__main__":
    main()
