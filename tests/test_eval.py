"""vidsr eval against the published bicubic anchor, and our LR against the distributed LR files."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vidsr.cli import main
from vidsr.models import weights as weights_mod
from vidsr.quality.imresize import imresize
from vidsr.quality.metrics import psnr

BENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "benchmarks"
SET5 = BENCH / "Set5"
needs_set5 = pytest.mark.skipif(
    not SET5.is_dir(),
    reason=f"benchmark data not found at {SET5} (../shared/data beside the checkout)",
)


def _eval(*args):
    result = CliRunner().invoke(main, ["eval", *args])
    assert result.exit_code == 0, result.output
    return result.output


@needs_set5
def test_bicubic_set5_reproduces_the_published_anchor():
    out = json.loads(_eval("--model", "bicubic", "--data", str(SET5), "--json").strip())
    assert out["images"] == 5
    assert 28.42 <= out["psnr_y"] <= 28.44  # literature: 28.42 dB
    assert 0.80 < out["ssim_y"] < 0.82


@needs_set5
def test_our_lr_matches_the_distributed_lr_files():
    for hr_path in sorted(SET5.glob("*_HR.png")):
        hr = np.asarray(Image.open(hr_path).convert("RGB"))
        lr = np.asarray(Image.open(str(hr_path).replace("_HR", "_LR")).convert("RGB"))
        ours = imresize(hr, 1 / 4)
        assert ours.shape == lr.shape
        assert psnr(ours, lr) >= 50.0, hr_path.name


@needs_set5
def test_hr_only_folder_makes_its_own_lr(tmp_path):
    for p in SET5.glob("*_HR.png"):
        shutil.copy(p, tmp_path / p.name)
    out = json.loads(_eval("--model", "bicubic", "--data", str(tmp_path), "--json").strip())
    assert abs(out["psnr_y"] - 28.43) < 0.06


def test_eval_table_on_generated_images(tmp_path):
    y, x = np.mgrid[0:64, 0:66]
    img = np.stack([x * 3, y * 3, (x + y) * 2], -1).clip(0, 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "ramp.png")  # HR only, width not a multiple of 4
    out = _eval("--model", "bicubic", "--data", str(tmp_path))
    assert "ramp" in out and "mean" in out
    score = json.loads(_eval("--model", "bicubic", "--data", str(tmp_path), "--json"))
    assert math.isfinite(score["psnr_y"]) and score["psnr_y"] > 30


def test_eval_trained_model_needs_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(weights_mod, "SHIPPED", {})  # a build without the weights files
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    result = CliRunner().invoke(main, ["eval", "--model", "srresnet", "--data", str(tmp_path)])
    assert result.exit_code != 0 and "--weights" in result.output


# -- --degrade SPEC -----------------------------------------------------------------------------


def _bench(folder: Path, names=("a", "b", "c"), size=64) -> Path:
    """A tiny benchmark folder of HR-only PNGs: smooth gradients with some texture."""
    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:size, 0:size]
    for name in names:
        i = ord(name[0]) % 5  # the picture depends on the name only
        rng = np.random.default_rng(i)
        img = np.stack([x * 3 + 20 * i, y * 2 + 40, (x + y) * 2], -1) + rng.normal(
            0, 12, (size,) * 2 + (3,)
        )
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f"{name}.png")
    return folder


def _json(*args):
    return json.loads(_eval("--model", "bicubic", *args, "--json").strip())


@pytest.mark.parametrize(
    ("mix", "applied"),
    [("web", "web = x264:crf=30:pan"), ("legacy", "legacy = noise:2,mpeg4:q=6-8:pan")],
)
def test_eval_named_mix_is_reproducible_and_says_what_it_applied(tmp_path, mix, applied):
    data = str(_bench(tmp_path / "bench"))
    clean = _json("--data", data)
    first, again = (_json("--data", data, "--degrade", mix) for _ in range(2))
    assert first == again
    assert first["degrade"] == applied and clean["degrade"] == "none"
    assert first["images"] == 3
    assert first["psnr_y"] < clean["psnr_y"] - 0.3  # bicubic on damaged LR scores lower


def test_eval_degrade_list_is_applied_in_order_and_shown_in_the_table(tmp_path):
    data = str(_bench(tmp_path / "bench"))
    mild, harsh = (_json("--data", data, "--degrade", s) for s in ("jpeg:q=90", "jpeg:q=20"))
    assert mild["psnr_y"] > harsh["psnr_y"]
    both = _json("--data", data, "--degrade", "blur:1.0,noise:5")
    assert both["degrade"] == "blur:1,noise:5"
    out = _eval("--model", "bicubic", "--data", data, "--degrade", "mpeg2:q=8")
    assert "mpeg2:q=8:pan" in out and "mean" in out


def test_eval_damage_depends_on_the_name_not_the_folder(tmp_path):
    from vidsr.quality.scoring import degrade_pairs, load_benchmark
    from vidsr.train.degrade import parse_spec

    spec = parse_spec("legacy")  # draws q and noise per image
    full = {p.name: p.lr for p in degrade_pairs(load_benchmark(_bench(tmp_path / "abc")), spec)}
    alone = degrade_pairs(load_benchmark(_bench(tmp_path / "c", names=("c",))), spec)
    assert np.array_equal(alone[0].lr, full["c"])
    assert not np.array_equal(full["a"], full["b"])


def test_eval_damages_the_distributed_lr_file(tmp_path):
    from vidsr.quality.scoring import degrade_pairs, load_benchmark
    from vidsr.train.degrade import parse_spec

    hr = np.asarray(Image.open(_bench(tmp_path, names=("x",)) / "x.png"))
    (tmp_path / "x.png").rename(tmp_path / "x_HR.png")
    given = np.full((16, 16, 3), 128, np.uint8)  # far from what imresize would make
    Image.fromarray(given).save(tmp_path / "x_LR.png")
    (pair,) = degrade_pairs(load_benchmark(tmp_path), parse_spec("jpeg:q=90"))
    assert psnr(pair.lr, given) > 40 and psnr(pair.lr, imresize(hr, 1 / 4)) < 25


def test_eval_bad_degrade_spec_is_one_line_before_any_model_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(weights_mod, "SHIPPED", {})  # loading srresnet first would fail otherwise
    data = str(_bench(tmp_path / "bench", names=("a",)))
    result = CliRunner().invoke(main, ["eval", "--data", data, "--degrade", "jpeg:q=40,x264:q=8"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "'x264:q=8'" in result.stderr
    assert "Traceback" not in result.output and "x264:crf=N" in result.stderr


def test_eval_help_documents_every_step_and_mix():
    from vidsr.train.degrade import MIXES, STEP_KINDS

    out = CliRunner().invoke(main, ["eval", "--help"]).output
    assert all(f"{k}:" in out for k in STEP_KINDS) and all(m in out for m in MIXES)
    assert all(body.replace(":pan", "") in out for body in MIXES.values())


def test_eval_skips_what_is_not_a_usable_image_and_says_so(tmp_path):
    y, x = np.mgrid[0:64, 0:64]
    good = np.stack([x * 3, y * 3, (x + y) * 2], -1).clip(0, 255).astype(np.uint8)
    Image.fromarray(good).save(tmp_path / "good.png")
    (tmp_path / "a.png").write_bytes(b"not an image at all")  # UnidentifiedImageError before
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")  # IndexError in bicubic before
    r = CliRunner().invoke(main, ["eval", "--model", "bicubic", "--data", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["images"] == 1
    assert "skipped 1 unreadable (a.png) and 1 under 32 px (dot.png)" in r.stderr
    (tmp_path / "good.png").unlink()
    r = CliRunner().invoke(main, ["eval", "--model", "bicubic", "--data", str(tmp_path)])
    assert r.exit_code == 2 and r.exception is None or isinstance(r.exception, SystemExit)
    assert r.output.count("\n") == 1 and "no usable images" in r.output
