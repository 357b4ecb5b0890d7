import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from vidsr.errors import WeightsError
from vidsr.models import MODELS, Discriminator, build_model, fold_batchnorm
from vidsr.models import weights as weights_mod
from vidsr.models.weights import load_generator


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registry_entry_upscales_4x(name):
    kw = {"blocks": 2, "channels": 8} if MODELS[name].trainable else {}
    model = build_model(name, **kw).eval()
    with torch.inference_mode():
        y = model(torch.rand(2, 3, 7, 11))
    assert y.shape == (2, 3, 28, 44)


def test_srresnet_has_the_paper_layout():
    m = build_model("srresnet")
    assert len(m.blocks) == 16
    assert m.head[0].kernel_size == (9, 9) and m.tail.kernel_size == (9, 9)
    assert [type(x) for x in m.blocks[0].body] == [
        nn.Conv2d,
        nn.BatchNorm2d,
        nn.PReLU,
        nn.Conv2d,
        nn.BatchNorm2d,
    ]
    assert len(m.upsample) == 2 and m.upsample[0].body[0].out_channels == 256
    assert sum(p.numel() for p in m.parameters()) == pytest.approx(1.55e6, rel=0.01)


def test_unknown_model_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        build_model("nope")


def _randomise_batchnorm(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def _multiply_adds(model: nn.Module, h: int = 36, w: int = 64) -> int:
    total = 0

    def count(mod, _inp, out):
        nonlocal total
        total += out.numel() * mod.in_channels // mod.groups * mod.weight[0, 0].numel()

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.inference_mode():
        model(torch.zeros(1, 3, h, w))
    for hook in hooks:
        hook.remove()
    return total


def test_fast_model_is_over_3x_cheaper_than_srresnet():
    fast, full = build_model("fast").eval(), build_model("srresnet").eval()
    # 22.2 vs 127.8 GMAC per 320x180 frame (the ratio does not depend on the size). No conv
    # runs at the output size in `fast`.
    assert 3 * _multiply_adds(fast) <= _multiply_adds(full)
    assert isinstance(fast.tail, nn.Identity) and isinstance(fast.upsample[1], nn.PixelShuffle)
    with torch.inference_mode():
        assert fast(torch.rand(1, 3, 5, 7)).shape == (1, 3, 20, 28)
    with pytest.raises(ValueError, match="upsample"):
        build_model("fast", upsample="nearest")


@pytest.mark.parametrize("upsample", ["progressive", "shuffle"])
def test_batchnorm_folding_is_exact(upsample):
    torch.manual_seed(0)
    model = build_model("srresnet", blocks=4, channels=16, upsample=upsample).eval()
    _randomise_batchnorm(model)
    x = torch.rand(2, 3, 12, 10)
    with torch.inference_mode():
        expected = model(x)
        folded = fold_batchnorm(model)
        got = folded(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)


def test_discriminator_gives_one_logit_per_image():
    d = Discriminator(channels=8, dense=16)
    assert d(torch.rand(3, 3, 96, 96)).shape == (3,)
    assert d(torch.rand(2, 3, 48, 40)).shape == (2,)


def test_bicubic_matches_pil():
    # Smooth content: PIL clips to 8 bits between its two passes, so overshoot would differ.
    rng = np.random.default_rng(0)
    coarse = rng.uniform(40, 215, (5, 8, 3))
    img = np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize((30, 20), Image.BILINEAR))
    x = torch.from_numpy(img).permute(2, 0, 1)[None].double()
    model = build_model("bicubic").double()
    ours = model(x)[0].permute(1, 2, 0).clamp(0, 255).round().numpy()
    pil = np.asarray(Image.fromarray(img).resize((120, 80), Image.BICUBIC)).astype(float)
    # PIL rounds in fixed point (a level of difference) and renormalises the kernel at the
    # borders where we mirror as MATLAB does; the interior must agree.
    assert np.abs(ours - pil)[8:-8, 8:-8].max() <= 1


def test_trainable_models_refuse_to_run_without_weights(monkeypatch):
    monkeypatch.setattr(weights_mod, "SHIPPED", {})  # a build with no weights files
    for name in ("srresnet", "srgan", "fast"):
        with pytest.raises(WeightsError, match="--weights"):
            load_generator(name)
    model, record = load_generator("bicubic")
    assert record is None and not any(True for _ in model.parameters())


def test_plain_state_dict_and_checkpoint_load(tmp_path):
    torch.manual_seed(1)
    net = build_model("srresnet")
    torch.save(net.state_dict(), tmp_path / "w.pt")
    loaded, _ = load_generator("srresnet", tmp_path / "w.pt")
    assert torch.equal(loaded.head[0].weight, net.head[0].weight)

    tiny = build_model("srresnet", blocks=2, channels=8)
    ckpt = {
        "format": "vidsr-checkpoint",
        "format_version": 1,
        "model": "srresnet",
        "arch": {"blocks": 2, "channels": 8, "scale": 4},
        "generator": {k: torch.zeros_like(v) for k, v in tiny.state_dict().items()},
        "ema": tiny.state_dict(),
        "step": 3,
    }
    torch.save(ckpt, tmp_path / "last.pt")
    loaded, _ = load_generator("srresnet", tmp_path / "last.pt")
    assert len(loaded.blocks) == 2
    assert torch.equal(loaded.head[0].weight, tiny.head[0].weight)  # the EMA weights, not G's


def test_bad_weight_files_are_clear_errors(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_generator("srresnet", tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        load_generator("srresnet", tmp_path / "text.pt")
    torch.save(build_model("fast").state_dict(), tmp_path / "fast.pt")
    with pytest.raises(WeightsError, match="does not fit"):
        load_generator("srresnet", tmp_path / "fast.pt")
    # A pickled module is refused by weights_only loading: nothing is unpickled.
    torch.save(build_model("srresnet", blocks=1, channels=4), tmp_path / "module.pt")
    with pytest.raises(WeightsError, match="would run vidsr.models.srresnet.SRResNet; refused"):
        load_generator("srresnet", tmp_path / "module.pt")


def test_the_help_texts_name_every_registry_model():
    from click.testing import CliRunner

    from vidsr.cli import main

    for command in ("upscale", "eval"):
        text = " ".join(CliRunner().invoke(main, [command, "--help"]).output.split())
        assert all(name in text for name in MODELS), (command, text)


def test_every_record_builds_the_network_it_describes():
    for name, record in MODELS.items():
        net = build_model(name)
        assert getattr(net, "scale", 4) == record.scale
        assert any(True for _ in net.parameters()) is record.trainable
