"""vidsr eval against the published bicubic anchor, and our LR against the distributed LR files."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vidsr import weights as weights_mod
from vidsr.cli import main
from vidsr.imresize import imresize
from vidsr.metrics import psnr

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
