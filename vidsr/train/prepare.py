"""`vidsr train prepare`: the training pictures cut once into the crop cache of vidsr.train.crops.

Each picture (a photo, or a frame sampled from a video) is shrunk by every factor asked for
(MATLAB-compatible bicubic, as the recipes' hr_downscale) and cut into overlapping square tiles
that are written, in order, to one raw uint8 file; the index is written last, so an interrupted
run leaves no cache that reads as whole.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from ..media.staging import write_text
from ..quality.imresize import imresize
from .crops import DATA, FORMAT, INDEX, CropCache, open_crops
from .data import read_image


def _count_tiles(files: list[Path], tile: int, step: int, factors: tuple[int, ...]) -> int:
    """Tiles the pictures will give, from their headers (imresize's size: ceil(side / f))."""
    total = 0
    for path in files:
        try:
            with Image.open(path) as im:
                w, h = im.size
        except Exception:  # noqa: BLE001 - counted as none; prepare skips and says it
            continue
        for f in factors:
            sh, sw = math.ceil(h / f), math.ceil(w / f)
            total += len(tile_origins(sh, tile, step)) * len(tile_origins(sw, tile, step))
    return total


def tile_origins(length: int, tile: int, step: int) -> list[int]:
    """Starts of tiles of `tile` px every `step` px along `length`, the last flush with the end."""
    if length < tile:
        return []
    starts = list(range(0, length - tile + 1, step))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def prepare_crops(
    files: list[Path],
    out: Path,
    *,
    tile: int = 256,
    step: int | None = None,
    factors: tuple[int, ...] = (1,),
    max_tiles: int | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> CropCache:
    """Cut every picture of `files`, shrunk by each of `factors` (MATLAB bicubic), into tiles of
    `tile` px every `step` px (default 3/4 of a tile), into a cache in `out`; with `max_tiles`,
    every k-th tile only, evenly over all pictures, so that at most that many are kept (a cache
    to carry somewhere small). The index is written last: a cache whose preparation was
    interrupted is not taken for a complete one."""
    step = step or tile * 3 // 4
    if tile < 16 or not 0 < step <= tile:
        raise InputError(f"tile {tile} / step {step}: need tile >= 16 and 0 < step <= tile")
    every = 1
    if max_tiles is not None:
        every = max(1, math.ceil(_count_tiles(files, tile, step, factors) / max(1, max_tiles)))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / INDEX).unlink(missing_ok=True)
    count, sources, seen = 0, 0, 0
    with open(out / DATA, "wb") as f:
        for n, path in enumerate(files, 1):
            try:
                img = read_image(path)
            except Exception as e:  # noqa: BLE001 - a broken file is skipped and said
                say(f"skipped {path}: {e}")
                continue
            for factor in factors:
                pic = img if factor == 1 else imresize(img, 1 / factor)
                ys, xs = (
                    tile_origins(pic.shape[0], tile, step),
                    tile_origins(pic.shape[1], tile, step),
                )
                kept = 0
                for y in ys:
                    for x in xs:
                        seen += 1
                        if (seen - 1) % every:
                            continue
                        f.write(np.ascontiguousarray(pic[y : y + tile, x : x + tile]).tobytes())
                        kept += 1
                count += kept
                sources += kept > 0
            if n % 10 == 0 or n == len(files):
                say(f"{n}/{len(files)} pictures, {count} tiles")
    if count == 0:
        raise InputError(f"no picture is {tile} px on its shorter side after shrinking")
    meta = {"format": FORMAT, "tile": tile, "step": step, "every": every, "count": count,
            "factors": list(factors), "sources": sources,
            "files": [str(p) for p in files]}  # fmt: skip
    write_text(out / INDEX, json.dumps(meta, indent=1))
    return open_crops(out)


__all__ = ["prepare_crops", "tile_origins"]
