import numpy as np
import pytest
import torch

from vidsr.models.bicubic import Bicubic
from vidsr.quality.imresize import imresize, mod_crop


def test_constant_image_stays_constant_and_uint8():
    img = np.full((37, 50, 3), 123, np.uint8)
    out = imresize(img, 1 / 4)
    assert out.dtype == np.uint8 and out.shape == (10, 13, 3)  # MATLAB: ceil(size * scale)
    assert (out == 123).all()


def test_size_argument_and_errors():
    img = np.zeros((20, 30), np.float64)
    assert imresize(img, size=(5, 10)).shape == (5, 10)
    with pytest.raises(ValueError):
        imresize(img)


def test_upscale_matches_the_bicubic_model():
    # MATLAB's upscaling path (no antialias widening) is the same a = -0.5 kernel with mirrored
    # borders as vidsr's Bicubic model: two independent implementations must agree.
    rng = np.random.default_rng(0)
    img = rng.random((9, 13, 3))
    ours = imresize(img, 4)
    model = Bicubic(scale=4).double()
    ref = model(torch.from_numpy(img).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-9)


def test_antialias_removes_the_highest_frequency():
    stripes = np.tile(np.array([0.0, 255.0]), (16, 32))  # (16, 64) one-pixel stripes
    inner = (slice(None), slice(2, -2))  # away from the mirrored borders
    smooth = imresize(stripes, 1 / 4)[inner]
    assert np.ptp(smooth) < 1.0
    noise = np.random.default_rng(0).random((32, 32)) * 255
    assert np.std(imresize(noise, 1 / 4)) < 0.5 * np.std(imresize(noise, 1 / 4, antialias=False))


def test_mod_crop():
    assert mod_crop(np.zeros((10, 7, 3)), 4).shape == (8, 4, 3)
