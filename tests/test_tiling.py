"""Tiles join without seams: tiled and untiled outputs of the same frame agree."""

from __future__ import annotations

import pytest
import torch

from vidsr.models import Bicubic, SRResNet
from vidsr.upscale.engine import Engine
from vidsr.upscale.tiling import context_pixels, plan_tiles, upscale_tiled


@pytest.mark.parametrize(
    ("h", "w", "tile", "pad"), [(48, 64, 16, 5), (17, 33, 8, 3), (10, 10, 32, 4)]
)
def test_tile_cores_cover_the_frame_once(h, w, tile, pad):
    seen = torch.zeros(h, w, dtype=torch.int32)
    for t in plan_tiles(h, w, tile, pad):
        assert 0 <= t.y0 <= t.cy0 < t.cy1 <= t.y1 <= h
        assert 0 <= t.x0 <= t.cx0 < t.cx1 <= t.x1 <= w
        assert t.cy0 - t.y0 <= pad and t.y1 - t.cy1 <= pad
        seen[t.cy0 : t.cy1, t.cx0 : t.cx1] += 1
    assert (seen == 1).all()


def test_context_covers_srresnet_receptive_field():
    # head 9x9 (4) + 2 convs per block + trunk tail (1) + 2 upsample convs (2) + tail 9x9 (4)
    assert context_pixels(SRResNet(blocks=16, channels=64)) == 4 + 32 + 1 + 2 + 4
    assert context_pixels(Bicubic()) == 2


def _run(model):
    def run(x):
        return model(x)

    return run


@torch.inference_mode()
def test_full_srresnet_tiled_equals_untiled_fp32():
    """The shipped architecture with random weights: a wide frame, so context really is clipped."""
    torch.manual_seed(0)
    model = SRResNet(blocks=16, channels=64).eval()
    x = torch.rand(1, 3, 6, 112)
    whole = model(x)
    tiled = upscale_tiled(_run(model), x, scale=4, tile=16, pad=context_pixels(model))
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max().item() < 1 / 255


@pytest.mark.parametrize("upsample", ["progressive", "shuffle"])
@torch.inference_mode()
def test_small_srresnet_tiled_equals_untiled_and_too_little_context_shows(upsample):
    torch.manual_seed(1)
    model = SRResNet(blocks=4, channels=8, upsample=upsample).eval()
    x = torch.rand(1, 3, 48, 72)
    whole = model(x)
    pad = context_pixels(model)
    tiled = upscale_tiled(_run(model), x, scale=4, tile=24, pad=pad)
    assert (tiled - whole).abs().max().item() < 1 / 255
    # The same tiles without context leave visible seams: the comparison above is not vacuous.
    seamy = upscale_tiled(_run(model), x, scale=4, tile=24, pad=0)
    assert (seamy - whole).abs().max().item() > 1 / 255


@torch.inference_mode()
def test_bicubic_tiled_equals_untiled():
    model = Bicubic()
    x = torch.rand(1, 3, 50, 70)
    whole = model(x)
    tiled = upscale_tiled(_run(model), x, scale=4, tile=16, pad=context_pixels(model))
    assert (tiled - whole).abs().max().item() < 1e-5


def test_engine_tiles_uint8_frames_like_untiled():
    torch.manual_seed(2)
    frames = torch.randint(0, 256, (2, 40, 56, 3), dtype=torch.uint8)
    model = SRResNet(blocks=2, channels=8)
    whole = Engine(model, device="cpu", precision="fp32", tile=0)(frames)
    tiled = Engine(model, device="cpu", precision="fp32", tile=16)(frames)
    assert tiled.shape == (2, 160, 224, 3) and tiled.dtype == torch.uint8
    diff = (tiled.int() - whole.int()).abs()
    assert diff.max().item() <= 1  # rounding of a value within float error of .5
    assert diff.float().mean().item() < 1e-3
