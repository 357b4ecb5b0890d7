import math

import numpy as np
import pytest

from vidsr.quality.metrics import psnr, rgb_to_y, score_y, shave, ssim


def test_rgb_to_y_studio_range():
    img = np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8)
    np.testing.assert_allclose(rgb_to_y(img), [[16.0, 235.0]], atol=1e-9)


def test_psnr_known_values():
    a = np.zeros((8, 8))
    assert psnr(a, a) == math.inf
    assert psnr(a, a + 1) == pytest.approx(20 * math.log10(255))


def test_ssim_identity_and_drop():
    rng = np.random.default_rng(0)
    a = np.add.outer(np.arange(40.0), np.arange(40.0)) + 60  # a smooth ramp
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, a + rng.normal(0, 20, a.shape)) < 0.9


def test_score_shaves_the_border():
    hr = np.full((32, 32, 3), 100, np.uint8)
    sr = hr.copy()
    sr[:4] = 0  # damage only inside the shaved border
    assert score_y(sr, hr, border=4).psnr_y == math.inf
    assert score_y(sr, hr, border=0).psnr_y < 30
    assert shave(np.zeros((10, 10)), 2).shape == (6, 6)
    with pytest.raises(ValueError):
        score_y(sr[:8], hr)


def _texture(seed=0, size=96):
    rng = np.random.default_rng(seed)
    from PIL import Image

    small = rng.integers(0, 256, (size // 4, size // 4, 3), dtype=np.uint8)
    return np.array(Image.fromarray(small).resize((size, size), Image.BICUBIC))


def test_grid_index_sees_a_phase_locked_pattern_only():
    from vidsr.quality.metrics import grid_index

    img = _texture()
    clean = grid_index(img)
    dots = img.astype(np.int16)
    dots[0::4, 0::4] += 12  # one sub-pixel phase brighter: the SRGAN dot grid
    dotted = grid_index(np.clip(dots, 0, 255).astype(np.uint8))
    assert clean < 0.06
    assert dotted > 0.3
    # a shift by one pixel moves the pattern to another phase; its strength stays
    shifted = np.clip(np.roll(dots, 1, axis=1), 0, 255).astype(np.uint8)
    assert abs(grid_index(shifted) - dotted) < 0.05


def test_detail_and_colour_shift():
    from vidsr.quality.metrics import colour_shift, detail

    hr = _texture(1)
    from PIL import Image

    blurred = np.array(Image.fromarray(hr).resize((24, 24)).resize((96, 96), Image.BILINEAR))
    assert detail(hr, hr) == pytest.approx(1.0)
    assert detail(blurred, hr) < 0.8
    lifted = np.clip(hr.astype(np.int16) + [3, 0, 0], 0, 255).astype(np.uint8)
    r, g, b = colour_shift(lifted, hr)
    assert 2.5 < r <= 3.0 and g == 0 and b == 0


def test_grid_loss_matches_the_index():
    import torch

    from vidsr.quality.metrics import grid_index
    from vidsr.train.losses import grid_loss

    hr = _texture(2)
    dots = hr.astype(np.int16)
    dots[1::4, 2::4] -= 15
    dots = np.clip(dots, 0, 255).astype(np.uint8)
    t = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255  # noqa: E731
    assert grid_loss(t(hr), t(hr)).item() == pytest.approx(0.0, abs=1e-9)
    # the loss is the squared index (minus the HR's own, tiny one): same quantity, same crop
    assert grid_loss(t(dots), t(hr)).item() == pytest.approx(grid_index(dots) ** 2, rel=0.2)


def test_lowpass_loss_sees_colour_not_texture():
    import torch

    from vidsr.train.losses import lowpass_loss

    hr = torch.rand(1, 3, 32, 32)
    # the same 4x4 block means, different texture inside each block: no low-pass difference
    texture = hr + (torch.rand(1, 3, 32, 32) - 0.5) * 0.2
    texture = texture - torch.nn.functional.avg_pool2d(texture - hr, 4).repeat_interleave(
        4, 2
    ).repeat_interleave(4, 3)
    assert lowpass_loss(texture, hr).item() < 1e-6
    assert lowpass_loss(hr + 3 / 255, hr).item() == pytest.approx(3 / 255, rel=1e-4)
