"""The prepared crop cache: `vidsr train prepare`, and `vidsr train --data CACHE`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from vidsr.cli import main
from vidsr.quality.imresize import imresize
from vidsr.train.crops import DATA, INDEX, open_crops
from vidsr.train.data import PairDataset
from vidsr.train.prepare import prepare_crops, tile_origins


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pics")
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(100, 130), (64, 64), (40, 200)]):  # the last: too small
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_tile_origins_cover_the_picture_with_the_last_flush():
    assert tile_origins(100, 64, 48) == [0, 36]
    assert tile_origins(64, 64, 48) == [0]
    assert tile_origins(63, 64, 48) == []
    assert tile_origins(200, 64, 64) == [0, 64, 128, 136]


def test_prepared_tiles_are_the_pictures_pieces(pictures, tmp_path):
    files = sorted(pictures.glob("*.png"))
    cache = prepare_crops(files, tmp_path / "c", tile=64, step=48, factors=(1, 2))
    img = np.array(Image.open(files[0]))
    half = imresize(img, 0.5)  # 50x65: under a tile, no tiles at factor 2
    assert min(half.shape[:2]) < 64
    # 100x130 at 1: rows 0, 36 x cols 0, 48, 66; 64x64: one; 40x200: none
    assert cache.count == 2 * 3 + 1 and cache.sources == 2 and cache.factors == (1, 2)
    tiles = cache.array()
    assert np.array_equal(tiles[0], img[0:64, 0:64])
    assert np.array_equal(tiles[5], img[36:100, 66:130])
    meta = json.loads((tmp_path / "c" / INDEX).read_text())
    assert meta["tile"] == 64 and meta["step"] == 48 and len(meta["files"]) == 3


def test_a_damaged_cache_is_one_line(pictures, tmp_path):
    prepare_crops(sorted(pictures.glob("*.png")), tmp_path / "c", tile=32)
    with open(tmp_path / "c" / DATA, "r+b") as f:
        f.truncate(100)
    with pytest.raises(Exception, match="prepare it again"):
        open_crops(tmp_path / "c")
    (tmp_path / "c" / INDEX).write_text("{")
    with pytest.raises(Exception, match="not a readable crop cache"):
        open_crops(tmp_path / "c")


def test_samples_from_the_cache_are_crops_of_its_tiles(pictures, tmp_path):
    cache = prepare_crops(sorted(pictures.glob("*.png")), tmp_path / "c", tile=48, step=48)
    ds = PairDataset([], crop=32, scale=4, tiles=cache, augment=False)
    assert len(ds) == cache.count
    lr, hr = ds[(2, 5)]
    assert tuple(hr.shape) == (3, 32, 32) and tuple(lr.shape) == (3, 8, 8)
    tile = torch.from_numpy(np.array(cache.array()[2])).permute(2, 0, 1)
    found = any(torch.equal(tile[:, y : y + 32, x : x + 32], hr)
                for y in range(17) for x in range(17))  # fmt: skip
    assert found
    assert torch.equal(ds[(2, 5)][1], hr)  # the same position draws the same crop
    with pytest.raises(Exception, match="under --crop"):
        PairDataset([], crop=64, scale=4, tiles=cache)


def test_cli_prepare_then_train_from_the_cache(pictures, tmp_path):
    cache = tmp_path / "cache"
    r = CliRunner().invoke(main, ["train", "prepare", "--data", str(pictures), "--out",
                                  str(cache), "--tile", "48"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "tiles of 48 px" in r.output
    recipe = tmp_path / "tiny.toml"
    recipe.write_text('model = "srresnet"\narch = {blocks = 1, channels = 8}\nworkers = 0\n'
                      "log_every = 1\n")  # fmt: skip
    run = tmp_path / "run"
    args = ["train", "--recipe", str(recipe), "--data", str(cache), "--out", str(run),
            "--batch-size", "2", "--crop", "32", "--steps", "3", "-q"]  # fmt: skip
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "prepared cache" in r.output
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert all(row["data_s"] >= 0 and row["step_s"] > 0 for row in rows[:2])
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 3
    # a cache is the whole of the data
    mixed = CliRunner().invoke(main, [*args[:5], "--data", str(pictures), "--out",
                                      str(tmp_path / "run2"), *args[7:]])  # fmt: skip
    assert mixed.exit_code != 0 and "only --data" in mixed.output
    assert "Traceback" not in mixed.output
    r = CliRunner().invoke(main, ["train", "prepare", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "--data" in r.output


def test_max_tiles_keeps_an_even_subset(pictures, tmp_path):
    files = sorted(pictures.glob("*.png"))
    full = prepare_crops(files, tmp_path / "a", tile=32, step=16, factors=(1, 2))
    some = prepare_crops(files, tmp_path / "b", tile=32, step=16, factors=(1, 2), max_tiles=10)
    assert 5 <= some.count <= 10 < full.count
    every = json.loads((tmp_path / "b" / INDEX).read_text())["every"]
    assert np.array_equal(some.array()[1], full.array()[every])
