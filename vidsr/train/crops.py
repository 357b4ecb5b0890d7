"""A prepared cache of HR crops, read by `vidsr train --data CACHE` (made by vidsr.train.prepare).

Decoding a multi-megapixel JPEG costs about 0.2 s on these cores, more than a training step, and
every loader process decoded every photo again. Prepared once, the training pictures (photos and
sampled video frames, each shrunk by every factor the recipe asks for) are cut into overlapping
square tiles, as BasicSR's sub-image extraction does, and stored as one uint8 array on disk:
`crops.u8` (N x tile x tile x 3, raw) beside `crops.json` (its shape, the factors, the sources).
A training sample is then a random crop inside a random tile of a memory-mapped array: no
decoding, no resizing, shared by every loader process through the page cache.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

INDEX = "crops.json"
DATA = "crops.u8"
FORMAT = 1


@dataclass(frozen=True)
class CropCache:
    path: Path
    tile: int
    count: int
    factors: tuple[int, ...]
    sources: int  # pictures the tiles were cut from

    def array(self) -> np.ndarray:
        """The tiles, (count, tile, tile, 3) uint8, memory-mapped read-only."""
        shape = (self.count, self.tile, self.tile, 3)
        return np.memmap(self.path / DATA, dtype=np.uint8, mode="r", shape=shape)


def is_crop_cache(folder: Path) -> bool:
    return (Path(folder) / INDEX).is_file()


def open_crops(folder: Path) -> CropCache:
    """The prepared cache in `folder`; InputError (one line) if it is incomplete or damaged."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / INDEX).read_text())
        tile, count = int(meta["tile"]), int(meta["count"])
        factors, sources = tuple(int(f) for f in meta["factors"]), int(meta["sources"])
        if int(meta["format"]) != FORMAT:
            raise ValueError(f"format {meta['format']}, this vidsr reads {FORMAT}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{folder}: not a readable crop cache ({e}); prepare it again") from None
    size = (folder / DATA).stat().st_size if (folder / DATA).exists() else -1
    if size != count * tile * tile * 3:
        raise InputError(
            f"{folder}: {DATA} holds {max(size, 0)} bytes, not the {count} tiles of {tile} px "
            "its index says (interrupted?); prepare it again"
        )
    return CropCache(folder, tile, count, factors, sources)


__all__ = ["DATA", "FORMAT", "INDEX", "CropCache", "is_crop_cache", "open_crops"]
