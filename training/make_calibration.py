"""Make vidsr/weights/calibration.npz: the LR crops `--precision int8` calibrates on.

    .venv/bin/python training/make_calibration.py ../shared/data/photos

Two 64x64 LR crops from each of nine photographs whose licences allow redistribution with
attribution (CC-BY-4.0) or without (CC0-1.0); never from Set5/Set14, which are for evaluation.
Each photo is shrunk to 1024 px on its long side (as video frames are softer than the
photographs), a 256x256 crop is cut at a seeded random place and shrunk by 4 with MATLAB's
bicubic (vidsr.quality.imresize): the same degradation `vidsr eval` feeds the models.
The npz holds `crops` (N, 64, 64, 3) uint8 and `sources` (the photo and its licence per crop).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from vidsr.quality.imresize import imresize

# From shared/data/SOURCES.md: lomiri-wallpapers-16.04.
PHOTOS = {
    "lomiri_Picture_0B_by_freespace.jpg": "CC-BY-4.0, freespace",
    "lomiri_Picture_1A_by_freespace.jpg": "CC-BY-4.0, freespace",
    "lomiri_Wine_by_Jakkub_Mede.jpg": "CC-BY-4.0, Jakkub Mede",
    "lomiri_aitzgorri_by_Aitzol_Berasategi.jpg": "CC-BY-4.0, Aitzol Berasategi",
    "lomiri_friends_by_Aitzol_Berasategi.jpg": "CC-BY-4.0, Aitzol Berasategi",
    "lomiri_life_by_Aitzol_Berasategi.jpg": "CC-BY-4.0, Aitzol Berasategi",
    "lomiri_picosdeeuropa_by_Aitzol_Berasategi.jpg": "CC-BY-4.0, Aitzol Berasategi",
    "lomiri_sunset_by_Aitzol_Berasategi.jpg": "CC-BY-4.0, Aitzol Berasategi",
    "lomiri_seeding_by_Clements_Engelhardt.jpg": "CC0-1.0, Clements Engelhardt",
}
OUT = Path(__file__).resolve().parents[1] / "vidsr" / "weights" / "calibration.npz"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("photos", type=Path)
    ap.add_argument("--per-photo", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    crops, sources = [], []
    for name, licence in PHOTOS.items():
        im = Image.open(args.photos / name).convert("RGB")
        f = 1024 / max(im.size)
        hr = np.asarray(im.resize((round(im.width * f), round(im.height * f)), Image.LANCZOS))
        for _ in range(args.per_photo):
            y = int(rng.integers(0, hr.shape[0] - 256))
            x = int(rng.integers(0, hr.shape[1] - 256))
            crops.append(imresize(np.ascontiguousarray(hr[y : y + 256, x : x + 256]), 0.25))
            sources.append(f"{name} ({licence}), 1024 px, crop at {x},{y}, x1/4")
    np.savez_compressed(args.out, crops=np.stack(crops), sources=np.array(sources))
    print(f"wrote {args.out}: {len(crops)} crops, {args.out.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
