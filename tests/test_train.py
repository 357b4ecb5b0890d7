"""The training loop with tiny widths: loss falls, resume equals an uninterrupted run, DDP, CLI."""

import os
import signal
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from vidsr import weights as weights_mod
from vidsr.cli import main
from vidsr.config import TrainConfig
from vidsr.errors import VidsrError
from vidsr.models import build_model
from vidsr.train.data import PairDataset
from vidsr.train.loop import lr_at, train
from vidsr.train.recipe import build_config
from vidsr.weights import load_generator

TINY = {"blocks": 1, "channels": 8, "scale": 4}
TINY_D = {"channels": 8, "blocks": 4, "dense": 16, "pool": 2}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    y, x = np.mgrid[0:72, 0:80]
    for i in range(3):
        rng = np.random.default_rng(i)
        img = np.stack([x * 3 + i * 20, y * 3, (x + y) * 2], -1) + rng.normal(0, 8, (72, 80, 3))
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


def _config(recipe, photos, out, **kw):
    base = dict(
        data=(photos,), out=out, arch=TINY, batch_size=2, crop=32, workers=0, precision="fp32",
        device="cpu", quiet=True, ckpt_every=0, val_every=0, sample_every=0,
    )  # fmt: skip
    return build_config(recipe, **{**base, **kw})


def test_loss_falls_on_a_fixed_batch(photos):
    torch.manual_seed(0)
    ds = PairDataset(sorted(photos.glob("*.png")), crop=32)
    pairs = [ds[(i % 3, i)] for i in range(4)]
    lr, hr = (torch.stack(t).float() / 255 for t in zip(*pairs, strict=True))
    g = build_model("srresnet", **TINY).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(g.parameters(), lr=1e-3)
    losses = []
    for _ in range(25):
        loss = torch.nn.functional.mse_loss(g(lr.contiguous(memory_format=torch.channels_last)), hr)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def _states(ckpt):
    return {k: ckpt[k] for k in ("generator", "ema", "discriminator")}


def _assert_equal(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_srgan_resume_equals_uninterrupted(photos, tmp_path):
    """GAN + VGG content (random VGG weights, explicitly) + EMA + video degradations."""
    init = tmp_path / "init.pt"
    torch.save(build_model("srresnet", **TINY).state_dict(), init)
    kw = dict(init=init, discriminator=TINY_D, vgg="vgg19_22", vgg_weights="random",
              degrade="video", steps=4, lr_milestones=[])  # fmt: skip
    whole = train(_config("srgan", photos, tmp_path / "whole", **kw))
    assert whole["step"] == 4 and whole["loss_d"] > 0
    train(_config("srgan", photos, tmp_path / "split", **{**kw, "steps": 2}))
    train(_config("srgan", photos, tmp_path / "split", **kw, resume=True))
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    _assert_equal(_states(a), _states(b))
    _assert_equal(a["opt_g"], b["opt_g"], "opt_g")
    _assert_equal(a["opt_d"], b["opt_d"], "opt_d")


def test_lr_schedule_steps_down_at_half():
    cfg = build_config("srgan", steps=100)
    assert [lr_at(cfg, s) for s in (0, 49, 50, 99)] == pytest.approx([1e-4, 1e-4, 1e-5, 1e-5])


def test_checkpoint_loads_for_upscale_and_refuses_overwrite(photos, tmp_path):
    cfg = _config("srresnet", photos, tmp_path / "run", steps=3, val=photos, val_every=2,
                  sample_every=2, ckpt_every=2)  # fmt: skip
    summary = train(cfg)
    assert summary["step"] == 3 and "val_psnr_y" in summary
    run = tmp_path / "run"
    assert (run / "curves.png").is_file() and sorted(p.name for p in (run / "samples").iterdir())
    model, _ = load_generator("srresnet", run / "last.pt")
    assert model(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)
    with pytest.raises(VidsrError, match="--resume"):
        train(cfg)


def test_sigint_writes_a_checkpoint_and_returns(photos, tmp_path):
    cfg = _config("srresnet", photos, tmp_path / "run", steps=10_000)
    timer = threading.Timer(1.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        summary = train(cfg)
    finally:
        timer.cancel()
    assert summary["interrupted"] and 0 < summary["step"] < 10_000
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["step"] == summary["step"]


def test_recipe_errors(tmp_path, monkeypatch):
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "srresnet"\nlearning_rate = 1e-4\n')
    with pytest.raises(VidsrError, match="unknown key 'learning_rate'"):
        build_config(bad)
    with pytest.raises(VidsrError, match="unknown recipe"):
        build_config("nope")
    cfg = build_config("srgan", steps=10, lr=2e-4)
    assert cfg.steps == 10 and cfg.lr == 2e-4 and cfg.adversarial_weight == 1e-3
    assert replace(cfg, steps=5).steps == 5
    monkeypatch.setattr(weights_mod, "SHIPPED", {})  # as before any weights shipped
    with pytest.raises(VidsrError, match="trained srresnet weights .* --init"):
        train(replace(cfg, data=(tmp_path,), out=tmp_path / "r", device="cpu"))


def test_cli_train_then_resume(photos, tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text('model = "srresnet"\narch = {blocks = 1, channels = 8}\nworkers = 0\n')
    run = tmp_path / "run"
    args = ["train", "--recipe", str(recipe), "--data", str(photos), "--out", str(run),
            "--batch-size", "2", "--crop", "48", "-q"]  # fmt: skip
    r1 = CliRunner().invoke(main, [*args, "--steps", "4"])
    assert r1.exit_code == 0, r1.output
    r2 = CliRunner().invoke(main, [*args, "--steps", "4"])
    assert r2.exit_code != 0 and "--resume" in r2.output
    assert isinstance(r2.exception, SystemExit)  # handled: no exception escaped the command
    r3 = CliRunner().invoke(main, [*args, "--steps", "8", "--resume"])
    assert r3.exit_code == 0, r3.output
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 8
    assert list((run / "samples").glob("*.png"))


def test_cli_vgg_layer_and_loss_weight_flags(photos, tmp_path):
    tiny = build_model("srresnet", **TINY)
    torch.save(tiny.state_dict(), tmp_path / "g.pt")
    recipe = tmp_path / "gan.toml"
    recipe.write_text(
        'model = "srgan"\narch = {blocks = 1, channels = 8}\nworkers = 0\ncontent_weight = 1.0\n'
        "adversarial_weight = 0.0\n"
    )
    args = ["train", "--recipe", str(recipe), "--data", str(photos), "--init",
            str(tmp_path / "g.pt"), "--batch-size", "2", "--crop", "32", "--steps", "1",
            "--vgg-weights", "random", "-q"]  # fmt: skip
    bad = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "a"), "--vgg", "vgg11_99"])
    assert bad.exit_code != 0 and "unknown VGG layer 'vgg11_99'" in bad.output
    assert isinstance(bad.exception, SystemExit)  # handled: no exception escaped the command
    assert not (tmp_path / "a" / "samples").exists()  # refused before any data work
    zero = ["--pixel-weight", "0", "--content-weight", "0", "--adversarial-weight", "0"]
    none = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "z"), *zero])
    assert none.exit_code != 0 and "at least one > 0" in none.output
    assert isinstance(none.exception, SystemExit)
    negative = CliRunner().invoke(
        main, [*args, "--out", str(tmp_path / "n"), "--pixel-weight", "-1"]
    )
    assert negative.exit_code == 2 and "--pixel-weight" in negative.output
    more = ["--vgg", "vgg16_53", "--pixel-weight", "0.5", "--content-weight", "2"]
    more += ["--adversarial-weight", "0.01"]
    ok = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "b"), *more])
    assert ok.exit_code == 0, ok.output
    config = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["config"]
    assert (config["vgg"], config["pixel_weight"], config["content_weight"]) == (
        "vgg16_53",
        0.5,
        2.0,
    )
    assert config["adversarial_weight"] == 0.01


def test_ddp_gloo_two_processes(photos, tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text('model = "srresnet"\narch = {blocks = 1, channels = 8}\nworkers = 0\n')
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "vidsr", "train", "--recipe", str(recipe), "--data", str(photos),
           "--out", str(tmp_path / "run"), "--steps", "3", "--batch-size", "2", "--crop", "32",
           "--device", "cpu", "--precision", "fp32", "-q"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["step"] == 3 and not any(k.startswith("module.") for k in ckpt["generator"])


def test_cosine_schedule_with_warmup():
    cfg = TrainConfig(lr=1e-3, steps=1000, lr_schedule="cosine", warmup_steps=100, lr_final=0.1)
    assert lr_at(cfg, 0) == pytest.approx(1e-5)
    assert lr_at(cfg, 99) == pytest.approx(1e-3)
    assert lr_at(cfg, 550) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert lr_at(cfg, 1000) == pytest.approx(1e-4)
    assert lr_at(cfg, 5000) == pytest.approx(1e-4)


def test_icnr_starts_sub_pixel_convs_as_nearest_neighbour():
    torch.manual_seed(0)
    for name in ("srresnet", "fast"):
        net = build_model(name, blocks=1, channels=8).eval()
        with torch.no_grad():
            y = net(torch.rand(1, 3, 6, 6))
        phases = [y[..., i::4, j::4] for i in range(4) for j in range(4)]
        spread = max(float((p - phases[0]).abs().max()) for p in phases)
        # fast: one shuffle, phases identical; srresnet: a 9x9 conv follows, phases only close
        assert spread < (1e-6 if name == "fast" else 0.5), name


def test_ragan_losses_pull_the_right_way():
    from vidsr.train.losses import discriminator_loss, generator_adversarial

    real, fake = torch.tensor([3.0, 2.0]), torch.tensor([-2.0, -3.0])
    # a discriminator that separates well has a low loss; the generator then has a high one
    assert discriminator_loss(real, fake, kind="ragan") < discriminator_loss(
        fake, real, kind="ragan"
    )
    assert generator_adversarial(fake, real, kind="ragan") > generator_adversarial(
        real, fake, kind="ragan"
    )
