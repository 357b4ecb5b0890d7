"""Bring your own model: community architectures through spandrel, any scale, --outscale.

Every model file here is made by the test from spandrel's own architecture classes with random
weights (small widths): nothing is downloaded. Speed and quality do not matter; shapes, scales,
timestamps, audio and the refusals do.
"""

from __future__ import annotations

import os

import pytest
import torch
from click.testing import CliRunner
from media import count_packets, make_clip, read_video

from vidsr.cli import main

spandrel = pytest.importorskip("spandrel", reason="spandrel is a dependency of vidsr")
from spandrel.architectures.Compact import Compact  # noqa: E402
from spandrel.architectures.ESRGAN import ESRGAN  # noqa: E402
from spandrel.architectures.SPAN import SPAN  # noqa: E402


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _nets():
    torch.manual_seed(0)
    return {
        "rrdb_x4": (ESRGAN(num_filters=8, num_blocks=1, scale=4), 4, "ESRGAN"),
        "compact_x2": (Compact(num_feat=8, num_conv=2, upscale=2), 2, "RealESRGAN Compact"),
        "span_x4": (SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=4), 4, "SPAN"),
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """name -> (path, scale, architecture) for .pth (plain and params_ema) and .safetensors."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("models")
    out = {}
    for name, (net, scale, arch) in _nets().items():
        state = {k: v.contiguous() for k, v in net.state_dict().items()}
        torch.save(state, folder / f"{name}.pth")
        torch.save({"params_ema": state}, folder / f"{name}_ema.pth")
        save_file(state, str(folder / f"{name}.safetensors"))
        for suffix in (".pth", "_ema.pth", ".safetensors"):
            out[name + suffix] = (folder / f"{name}{suffix}", scale, arch)
    return out


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "in.mp4"
    make_clip(path, width=32, height=24, frames=6, audio=True)
    return path


def test_models_lists_builtins_and_architectures():
    r = run("models")
    assert r.exit_code == 0, r.output
    for word in ("srresnet", "fast", "bicubic", "ESRGAN", "SPAN", "SwinIR", "HAT", "DAT"):
        assert word in r.output


@pytest.mark.parametrize("key", ["rrdb_x4.pth", "compact_x2_ema.pth", "span_x4.safetensors"])
def test_models_file_says_what_it_is(files, key):
    path, scale, arch = files[key]
    r = run("models", path)
    assert r.exit_code == 0, r.output
    assert arch in r.output and f"x{scale}" in r.output and "parameters" in r.output


@pytest.mark.parametrize("key", ["rrdb_x4.pth", "compact_x2_ema.pth", "span_x4.safetensors"])
def test_a_community_model_upscales_to_its_own_scale_keeping_pts_and_audio(
    files, clip, tmp_path, key
):
    path, scale, _ = files[key]
    src = read_video(clip)
    r = run("upscale", clip, "--weights", path, "-o", tmp_path / "o.mp4", "-q")
    assert r.exit_code == 0, r.output
    got = read_video(tmp_path / "o.mp4")
    assert (got["width"], got["height"]) == (32 * scale, 24 * scale)
    assert got["pts_ms"] == src["pts_ms"] and got["frames"] == src["frames"]
    assert count_packets(tmp_path / "o.mp4", "audio") == count_packets(clip, "audio")


def test_model_file_as_model_and_default_name_follows_the_scale(files, clip, tmp_path):
    path, _, _ = files["compact_x2.pth"]
    src = tmp_path / "c.mp4"
    src.write_bytes(clip.read_bytes())
    r = run("upscale", src, "--model", path, "-q")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "c_x2.mp4").is_file()  # a 2x model does not write "_x4"


@pytest.mark.parametrize("key, outscale", [("rrdb_x4.pth", 2), ("compact_x2.pth", 3)])
def test_outscale_resizes_after_the_model(files, clip, tmp_path, key, outscale):
    path, _, _ = files[key]
    out = tmp_path / "o.mkv"
    r = run("upscale", clip, "--weights", path, "--outscale", outscale, "-o", out, "-q")
    assert r.exit_code == 0, r.output
    got = read_video(out)
    assert (got["width"], got["height"]) == (32 * outscale, 24 * outscale)
    assert got["frames"] == read_video(clip)["frames"]


def test_outscale_with_a_builtin_model_and_even_sides(clip, tmp_path):
    out = tmp_path / "o.mp4"
    r = run("upscale", clip, "--model", "bicubic", "--outscale", "1.3", "-o", out, "-q")
    assert r.exit_code == 0, r.output
    got = read_video(out)
    assert (got["width"], got["height"]) == (42, 32)  # 41.6 -> 42, 31.2 -> 32: even for 4:2:0


def test_a_malicious_pickle_is_refused_without_running(tmp_path, clip):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "evil.pth"
    torch.save({"params": Evil()}, bad)
    r = run("upscale", clip, "--weights", bad, "-o", tmp_path / "o.mp4")
    assert r.exit_code != 0 and "refused" in r.output and "Traceback" not in r.output
    assert not marker.exists() and not (tmp_path / "o.mp4").exists()


def test_nan_weights_are_refused(files, tmp_path, clip):
    path, _, _ = files["compact_x2.pth"]
    state = torch.load(path, weights_only=True)
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] = torch.full_like(state[first], float("nan"))
    bad = tmp_path / "nan.pth"
    torch.save(state, bad)
    r = run("upscale", clip, "--weights", bad, "-o", tmp_path / "o.mp4")
    assert r.exit_code != 0 and "NaN" in r.output


def test_an_unknown_state_dict_is_one_line(tmp_path, clip):
    bad = tmp_path / "odd.pth"
    torch.save({"some.weight": torch.zeros(3, 3)}, bad)
    r = run("upscale", clip, "--weights", bad, "-o", tmp_path / "o.mp4")
    assert r.exit_code != 0 and "spandrel" in r.output
    assert len([ln for ln in r.output.splitlines() if ln.strip()]) == 1


def test_precision_follows_what_the_architecture_supports():
    from vidsr.models.community import CommunityModel
    from vidsr.upscale.engine import Engine

    class NoHalf(torch.nn.Module):
        scale = 2
        supports_half = supports_bfloat16 = False

        def forward(self, x):
            return torch.nn.functional.interpolate(x, scale_factor=2)

    engine = Engine(NoHalf(), device="cpu", precision="bf16")
    assert engine.precision == "fp32" and engine.notes
    assert CommunityModel  # the wrapper carries the same two flags from spandrel


def test_a_vidsr_model_in_a_basicsr_layout_is_still_a_vidsr_model(tmp_path, clip):
    from vidsr.models import build_model
    from vidsr.models.weights import describe_weights, load_network

    torch.manual_seed(0)
    net = build_model("fast")
    torch.save({"params_ema": net.state_dict()}, tmp_path / "fast_basicsr.pth")
    assert describe_weights(tmp_path / "fast_basicsr.pth") == "fast"
    loaded, _ = load_network("auto", tmp_path / "fast_basicsr.pth")
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(loaded(x), net.eval()(x), atol=1e-6)


def test_eval_and_bench_take_a_community_file(files, tmp_path):
    import json

    import numpy as np
    from PIL import Image

    bench = tmp_path / "set"
    bench.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        hr = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
        Image.fromarray(hr).save(bench / f"im{i}_HR.png")
        Image.fromarray(hr[::4, ::4]).save(bench / f"im{i}_LR.png")  # x4 LR files
    path, _, _ = files["compact_x2.pth"]
    r = run("eval", "--weights", path, "--data", bench, "--json")
    assert r.exit_code == 0, r.output
    assert "are not x2" in r.output  # a 2x model: the x4 LR files are not used, and it says so
    out = json.loads(r.output.strip().splitlines()[-1])
    assert out["images"] == 2 and out["psnr_y"] > 0
    r = run("bench", "--weights", path, "--size", "16x16", "--frames", "2", "--repeat", "1",
            "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["scale"] == 2


def test_the_first_line_names_the_model_file_and_its_architecture(files, clip, tmp_path):
    path, scale, arch = files["compact_x2.pth"]
    r = run("upscale", clip, "-o", tmp_path / "o.mp4", "--model", path)
    assert r.exit_code == 0, r.output
    first = r.output.splitlines()[0]
    assert f"model compact_x2.pth ({arch} x{scale})," in first and "model auto" not in first
