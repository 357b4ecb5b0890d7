import math

import numpy as np
import pytest

from vidsr.metrics import psnr, rgb_to_y, score_y, shave, ssim


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
