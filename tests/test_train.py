"""The training loop with tiny widths: loss falls, resume equals an uninterrupted run, DDP, CLI."""

import json
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

from vidsr.cli import main
from vidsr.errors import VidsrError
from vidsr.models import build_model
from vidsr.models import weights as weights_mod
from vidsr.models.weights import load_generator
from vidsr.train.config import TrainConfig
from vidsr.train.data import PairDataset
from vidsr.train.loop import lr_at, train
from vidsr.train.recipe import build_config

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


def _one_line_error(result) -> str:
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit)  # handled: no exception escaped the command
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vidsr: error:"), result.output
    return lines[0]


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--crop", "0", "crop must be > 0, got 0"),
        ("--batch-size", "0", "batch_size must be > 0, got 0"),
        ("--lr", "-1", "lr must be > 0, got -1.0"),
        ("--lr", "nan", "lr must be a number, got nan"),
        ("--steps", "0", "steps must be > 0"),
        ("--steps", "-3", "steps must be > 0"),
        ("--workers", "-1", "workers must be >= 0"),
        ("--val-every", "-5", "val_every must be >= 0"),
        ("--hr-downscale", "0", "hr_downscale must be > 0"),
        ("--seed", "-1", "seed must be >= 0"),
        ("--precision", "fp8", "precision 'fp8': choose from auto, fp32, bf16, fp16"),
    ],
)
def test_impossible_train_values_are_one_line(photos, tmp_path, flag, value, words):
    run = tmp_path / "run"
    result = CliRunner().invoke(
        main, ["train", "--data", str(photos), "--out", str(run), flag, value, "-q"]
    )
    assert words in _one_line_error(result)
    assert not run.exists()  # refused before the run folder, the data scan or a network


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("grid_weight = -1.0", "grid_weight must be >= 0"),
        ("content_weight = -0.5", "content_weight must be >= 0"),
        ('pixel_loss = "l3"', "pixel_loss 'l3': choose from mse, l1, charbonnier"),
        ("lr_milestones = [0.5, 2.0]", "lr_milestones must hold numbers in [0.0, 1.0]"),
        ("betas = [0.9]", "betas needs two values"),
        ('model = "bicubic"', "model 'bicubic': choose from srresnet, srgan, fast"),
        ("arch = {blocks = 100000}", "arch blocks = 100000 is not an integer 1..64"),
        ("discriminator = {channels = 100000}", "channels = 100000 is not an integer 8..256"),
        ('degrade = "vhs"', "unknown degradation 'vhs'"),
        ("lr = nan", "lr must be a number"),
    ],
)
def test_impossible_recipe_values_are_one_line(photos, tmp_path, line, words):
    recipe = tmp_path / "r.toml"
    tiny = "" if line.startswith("arch") else "arch = {blocks = 1, channels = 8}\n"
    recipe.write_text(f"{tiny}workers = 0\n{line}\n")
    args = ["train", "--recipe", str(recipe), "--data", str(photos), "--out", str(tmp_path / "r"),
            "--steps", "1", "--batch-size", "1", "--crop", "32", "-q"]  # fmt: skip
    assert words in _one_line_error(CliRunner().invoke(main, args))


def test_loss_names_in_the_config_match_the_losses():
    from vidsr.train.losses import GAN_LOSSES, PIXEL_LOSSES

    assert TrainConfig.CHOICES["pixel_loss"] == PIXEL_LOSSES
    assert TrainConfig.CHOICES["gan_loss"] == GAN_LOSSES


def _gan_run(photos, tmp_path):
    """A tiny RaGAN run at lr 1e-5, batch 2, crop 48: what a resume must keep."""
    recipe = tmp_path / "gan.toml"
    recipe.write_text(
        'model = "srgan"\narch = {blocks = 1, channels = 8}\nworkers = 0\nlr = 1e-5\n'
        'pixel_weight = 1.0\nadversarial_weight = 1e-3\ngan_loss = "ragan"\ndevice = "cpu"\n'
        "discriminator = {channels = 8, blocks = 4, dense = 16, pool = 2}\n"
        'precision = "fp32"\nckpt_every = 0\nval_every = 0\nsample_every = 0\n'
    )
    init = tmp_path / "g.pt"
    torch.save(build_model("srresnet", **TINY).state_dict(), init)
    run = tmp_path / "run"
    args = ["train", "--recipe", str(recipe), "--data", str(photos), "--out", str(run), "--init",
            str(init), "--batch-size", "2", "--crop", "48", "--steps", "1", "-q"]  # fmt: skip
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    return run


def test_resume_continues_the_stored_config(photos, tmp_path):
    import tomllib

    run = _gan_run(photos, tmp_path)
    stored = tomllib.loads((run / "config.toml").read_text())
    assert (stored["adversarial_weight"], stored["lr"], stored["crop"]) == (1e-3, 1e-5, 48)
    # No --recipe, no --data: everything comes from the run; steps and lr change, and say so.
    again = CliRunner().invoke(
        main, ["train", "--out", str(run), "--resume", "--steps", "3", "--lr", "2e-5", "-q"]
    )
    assert again.exit_code == 0, again.output
    assert "resume: steps 1 -> 3 (applied)" in again.output
    assert "resume: lr 1e-05 -> 2e-05 (applied)" in again.output
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["step"] == 3 and ckpt["discriminator"] is not None and ckpt["opt_d"] is not None
    config = ckpt["config"]
    assert (config["model"], config["gan_loss"], config["adversarial_weight"]) == (
        "srgan", "ragan", 1e-3)  # fmt: skip
    assert (config["batch_size"], config["crop"], config["lr"]) == (2, 48, 2e-5)
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 3 and rows[-1]["lr"] == pytest.approx(2e-5) and "adv" in rows[-1]
    assert tomllib.loads((run / "config.toml").read_text())["steps"] == 3


def test_resume_refuses_to_change_the_run(photos, tmp_path):
    run = _gan_run(photos, tmp_path)
    before = (run / "last.pt").read_bytes()
    for flags, words in (
        (["--crop", "32"], "crop 48 -> 32"),
        (["--batch-size", "4"], "batch_size 2 -> 4"),
        (["--pixel-loss", "l1"], "pixel_loss 'mse' -> 'l1'"),
        (["--recipe", "srresnet"], "model 'srgan' -> 'srresnet'"),
    ):
        result = CliRunner().invoke(
            main, ["train", "--out", str(run), "--resume", "--steps", "3", *flags, "-q"]
        )
        line = _one_line_error(result)
        assert words in line and "--resume cannot change" in line, line
    assert (run / "last.pt").read_bytes() == before


def test_resume_of_a_checkpoint_without_a_stored_config_takes_flags_and_recipe(photos, tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text('model = "srresnet"\narch = {blocks = 1, channels = 8}\nworkers = 0\n')
    run = tmp_path / "run"
    args = ["train", "--recipe", str(recipe), "--data", str(photos), "--out", str(run),
            "--batch-size", "2", "--crop", "32", "-q"]  # fmt: skip
    assert CliRunner().invoke(main, [*args, "--steps", "2"]).exit_code == 0
    old = torch.load(run / "last.pt", weights_only=True)
    del old["config"]  # as written before runs stored their config
    torch.save(old, run / "last.pt")
    (run / "config.toml").unlink()
    again = CliRunner().invoke(main, [*args, "--steps", "3", "--lr", "3e-4", "--resume"])
    assert again.exit_code == 0, again.output
    assert "resume:" not in again.output  # nothing to compare against
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["step"] == 3 and ckpt["config"]["lr"] == 3e-4 and ckpt["config"]["crop"] == 32


def test_a_torn_log_line_does_not_stop_a_resume(photos, tmp_path):
    cfg = _config("srresnet", photos, tmp_path / "run", steps=2)
    train(cfg)
    with open(tmp_path / "run" / "log.jsonl", "a") as f:
        f.write('{"step": 3, "loss_g": 0.')  # killed mid-write
    assert train(replace(cfg, steps=3, resume=True))["step"] == 3


def test_freeze_bn_keeps_the_init_statistics(photos, tmp_path):
    """Fine-tuning with freeze_bn: the BatchNorm running statistics of the shipped network are
    what the trained one still uses (train and eval see the same normalisation)."""
    first = train(_config("srresnet", photos, tmp_path / "a", steps=2))
    init = first["checkpoint"]
    before = torch.load(init, weights_only=True)["ema"]  # what --init takes from a checkpoint
    out = train(_config("srresnet", photos, tmp_path / "b", steps=3, init=init, freeze_bn=True))
    after = torch.load(out["checkpoint"], weights_only=True)["generator"]
    stats = [k for k in before if "running_" in k]
    assert stats and all(torch.equal(before[k], after[k]) for k in stats)
    moved = train(_config("srresnet", photos, tmp_path / "c", steps=3, init=init))
    after = torch.load(moved["checkpoint"], weights_only=True)["generator"]
    assert any(not torch.equal(before[k], after[k]) for k in stats)  # the default moves them
