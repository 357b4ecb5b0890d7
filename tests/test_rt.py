"""The real-time model `rt` (vidsr.models.ecbsr): its blocks fold exactly into one conv each, the
folded form is what ships and runs, and it is a built-in model like the others."""

import numpy as np
import torch
from click.testing import CliRunner
from torch import nn

from vidsr.cli import main
from vidsr.models import MODELS, RealTimeSR, build_model
from vidsr.models.ecbsr import ECB, pixel_shuffle_nhwc
from vidsr.models.records import RECORDS
from vidsr.models.weights import SHIPPED, load_generator, read_weights, vidsr_model_of
from vidsr.upscale.engine import Engine
from vidsr.upscale.tiling import context_pixels, upscale_tiled


def _random_rt(**arch) -> RealTimeSR:
    """An rt network whose every branch matters: the edge scales drawn large, not ~1e-3."""
    torch.manual_seed(0)
    net = RealTimeSR(**{"blocks": 2, "channels": 8, **arch})
    with torch.no_grad():
        for m in net.modules():
            if hasattr(m, "mask"):  # an edge branch: scale and bias per channel
                m.scale.normal_(0, 0.5)
                m.bias.normal_(0, 0.1)
            if isinstance(m, nn.PReLU):
                m.weight.uniform_(0.0, 0.5)
    return net


def test_block_folds_into_one_conv_exactly():
    torch.manual_seed(1)
    for cin, cout in ((3, 8), (8, 8), (8, 48)):  # head, body (with the identity), tail
        block = ECB(cin, cout)
        with torch.no_grad():
            for branch in (block.sobel_x, block.sobel_y, block.laplacian):
                branch.scale.normal_(0, 1.0)
                branch.bias.normal_(0, 0.1)
        x = torch.rand(2, cin, 9, 13)
        with torch.no_grad():
            branches = block.forward_branches(x)
            conv = block.fused()
            assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3)
            # borders included: the 1x1 outputs are padded with their bias, as the fold assumes
            assert (conv(x) - branches).abs().max() < 1e-5
            assert (block(x) - branches).abs().max() < 1e-5


def test_fused_network_equals_the_training_form_and_trains_alike():
    net = _random_rt()
    x = torch.rand(2, 3, 11, 14)
    # Training runs each block as its folded conv computed from the branches: same gradients.
    net.forward_branches(x).square().mean().backward()
    by_branch = {k: p.grad.clone() for k, p in net.named_parameters()}
    net.zero_grad()
    net(x).square().mean().backward()
    for k, p in net.named_parameters():
        assert torch.allclose(p.grad, by_branch[k], rtol=1e-4, atol=1e-6), k
    with torch.no_grad():
        branches = net.forward_branches(x)
        assert branches.shape == (2, 3, 44, 56)
        net.fuse()
        fused = net(x)
    assert all(isinstance(m, nn.Conv2d) for m in net.layers)
    assert sum(isinstance(m, nn.Conv2d) for m in net.modules()) == len(net.layers) == 4
    assert (fused - branches).abs().max() < 1e-5


def test_pixel_shuffle_nhwc_is_pixel_shuffle_written_channels_last():
    x = torch.rand(2, 48, 5, 7).contiguous(memory_format=torch.channels_last)
    y = pixel_shuffle_nhwc(x, 4)
    assert torch.equal(y, nn.PixelShuffle(4)(x))
    assert y.is_contiguous(memory_format=torch.channels_last)


def test_a_fused_file_loads_into_a_fresh_network(tmp_path):
    """What ships is the fused form; the registry's network fuses itself to take it, and a
    training checkpoint exports to it."""
    net = _random_rt(**MODELS["rt"].arch)
    ckpt = tmp_path / "last.pt"
    torch.save({"ema": net.state_dict(), "generator": net.state_dict(), "arch": {}}, ckpt)
    out = tmp_path / "rt.pt"
    result = CliRunner().invoke(main, ["export", str(ckpt), "--model", "rt", "-o", str(out)])
    assert result.exit_code == 0, result.output
    state = torch.load(out, map_location="cpu", weights_only=True)
    assert set(state) == set(build_model("rt").fuse().state_dict())  # one conv per layer
    assert all(v.dtype == torch.float16 for v in state.values())
    loaded, _ = load_generator("rt", out)
    assert loaded.is_fused and not loaded.training
    assert vidsr_model_of(read_weights(out)) == "rt"  # --model auto knows the fused file
    x = torch.rand(1, 3, 10, 12)
    with torch.no_grad():
        assert (loaded(x) - net.eval().forward_branches(x)).abs().max() < 2e-2  # fp16 weights
    # a checkpoint (training form) given with --weights runs fused too
    from_ckpt, _ = load_generator("rt", ckpt)
    assert from_ckpt.is_fused


def test_tiles_join_exactly():
    net = _random_rt(**MODELS["rt"].arch).fuse().eval()
    x = torch.rand(1, 3, 40, 52)
    pad = context_pixels(net)
    assert pad >= len(net.layers)  # one pixel per 3x3 layer (the bicubic taps reach two)
    with torch.no_grad():
        whole = net(x)
        tiled = upscale_tiled(net, x, scale=4, tile=16, pad=pad)
    assert (whole - tiled).abs().max() < 1e-5


def test_rt_is_a_built_in_model_that_ships_and_upscales_a_frame():
    record = RECORDS["rt"]
    assert record.network == "ecbsr" and record.scale == 4 and "rt" in SHIPPED
    assert record.scores is not None
    assert record.scores.set5 > RECORDS["bicubic"].scores.set5
    net, got = load_generator("rt")
    assert got is record and net.is_fused
    engine = Engine(net, device="cpu", precision="fp32", threads=1)
    rng = np.random.default_rng(0)
    frame = torch.from_numpy(rng.integers(0, 256, (1, 24, 32, 3), dtype=np.uint8))
    frame[:, :, :16] = 128  # a flat half stays flat
    out = engine(frame)
    assert out.shape == (1, 96, 128, 3) and out.dtype == torch.uint8
    flat = out[0, 24:72, 24:40].float()  # beyond the reach of the borders (6 LR pixels)
    assert (flat - 128).abs().max() <= 3
    assert out[0, :, 72:].float().std() > 20  # the noisy half keeps its contrast
