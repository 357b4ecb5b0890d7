"""--precision int8 (vidsr.upscale.int8): close to fp32, cached, and its option and error lines.

Run by tests/test_int8.py in a pytest process of their own (see there why)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from media import make_clip
from torch import nn

from vidsr.cli import main
from vidsr.config import UpscaleConfig, parse_precision
from vidsr.errors import VidsrError
from vidsr.media.sample import sample_frame
from vidsr.models import build_model
from vidsr.models.weights import load_network
from vidsr.train.config import TrainConfig
from vidsr.upscale import engine as engine_mod
from vidsr.upscale.engine import Engine, resolve_precision
from vidsr.upscale.int8 import calibration_crops, int8_available

needs_int8 = pytest.mark.skipif(
    not int8_available(), reason="needs openvino and onnxruntime (pip install 'vidsr[int8]')"
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A fresh cache for the quantised graphs: the first int8 engine quantises, later ones load."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("cache")
        mp.setenv("VIDSR_CACHE", str(path))
        yield path


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean())
    return 10 * np.log10(255**2 / mse) if mse else float("inf")


@needs_int8
def test_int8_is_close_to_fp32_on_generated_frames(cache):
    """The shipped fast weights on generated frames: int8 is not fp32 (PSNR between them 46.6 dB
    measured), but close to it; the whole Set5/Set14 check is in the README."""
    frames = torch.from_numpy(np.stack([sample_frame(i, 64, 48) for i in (0, 7)]))
    net, value_range = load_network("fast", None)
    fp32 = Engine(net, device="cpu", precision="fp32", value_range=value_range)(frames)
    net, value_range = load_network("fast", None)
    engine = Engine(net, device="cpu", precision="int8", value_range=value_range)
    assert engine.precision == "int8" and not engine._run.cached
    int8 = engine(frames)
    assert int8.shape == fp32.shape == (2, 192, 256, 3) and int8.dtype == torch.uint8
    assert 42.0 < psnr(int8, fp32) < 70.0
    # The graph was kept: the next engine for the same weights compiles it without quantising.
    again = Engine(load_network("fast", None)[0], device="cpu", precision="int8")
    assert again._run.cached and torch.equal(again(frames), int8)
    # Tiles of an int8 frame meet like fp32 tiles do: within rounding of the whole frame.
    tiled = Engine(load_network("fast", None)[0], device="cpu", precision="int8", tile=24)
    assert psnr(tiled(frames), int8) > 45.0
    assert len(list((cache / "int8").glob("*.onnx"))) == 1


@needs_int8
def test_upscale_says_precision_int8_on_its_first_line(cache, tmp_path):
    clip = tmp_path / "in.mp4"
    make_clip(clip, frames=3, audio=False)
    args = ["upscale", str(clip), "-o", str(tmp_path / "o.mp4"), "--model", "fast",
            "--precision", "int8", "--device", "cpu"]  # fmt: skip
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "precision int8" in r.output.splitlines()[0], r.output


def test_int8_is_an_option_for_upscale_not_for_training():
    assert parse_precision("int8") == "int8"
    assert UpscaleConfig(model="fast", precision="int8", device="cpu").precision == "int8"
    with pytest.raises(VidsrError, match="precision 'int8'"):
        TrainConfig(precision="int8")


@pytest.mark.parametrize(
    "args, said",
    [
        (["--device", "cuda"], "--precision: int8 runs on the CPU only; use fp16 on CUDA"),
        (["--model", "realesr-general-x4v3"], "--precision: int8 is for the built-in models"),
    ],
)
def test_int8_where_it_cannot_run_is_one_line(args, said, tmp_path):
    r = CliRunner().invoke(main, ["bench", "--precision", "int8", *args])
    assert r.exit_code == 2 and said in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output


def test_int8_needs_a_cpu_and_a_builtin_network():
    with pytest.raises(VidsrError, match="int8 runs on the CPU only"):
        resolve_precision("int8", torch.device("cuda"))
    other = nn.Sequential(nn.Conv2d(3, 48, 3, padding=1), nn.PixelShuffle(4))
    with pytest.raises(VidsrError, match="int8 is for vidsr's SRResNet-family models"):
        Engine(other, device="cpu", precision="int8")
    with pytest.raises(VidsrError, match="not RealTimeSR") as said:  # rt: fp32/bf16 only
        Engine(build_model("rt").fuse(), device="cpu", precision="int8")
    assert said.value.exit_code == 2
    bicubic = Engine(build_model("bicubic"), device="cpu", precision="int8")
    assert bicubic.precision == "fp32" and "no weights" in bicubic.notes[0]


def test_auto_takes_int8_only_without_native_bf16(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(engine_mod, "cpu_has_fast_bf16", lambda: False)
    assert resolve_precision("auto", cpu, int8=True) == "int8"
    assert resolve_precision("auto", cpu, int8=False) == "fp32"  # not installed, or not ours
    assert resolve_precision("auto", cpu, has_parameters=False, int8=True) == "fp32"
    monkeypatch.setattr(engine_mod, "cpu_has_fast_bf16", lambda: True)
    assert resolve_precision("auto", cpu, int8=True) == "bf16"


def test_calibration_crops_are_synthetic_seeded_and_picture_like():
    crops = calibration_crops()
    assert len(crops) == 18 and crops[0].shape == (1, 3, 64, 64) and crops[0].dtype == np.float32
    assert 0.0 <= min(c.min() for c in crops) and max(c.max() for c in crops) <= 1.0
    again = calibration_crops((-1.0, 1.0))  # the same pictures in another pixel range
    assert all(np.allclose((b + 1) / 2, a, atol=1e-6) for a, b in zip(crops, again, strict=True))
    x = np.concatenate(crops)
    assert x.std() > 0.15  # not flat: bright and dark leaves
    steps = np.abs(np.diff(x, axis=-1))
    assert (steps < 0.01).mean() > 0.1 and (steps > 0.1).mean() > 0.05  # flat areas and edges


@needs_int8
def test_auto_engine_takes_int8_on_a_cpu_without_bf16(cache, monkeypatch):
    monkeypatch.setattr(engine_mod, "cpu_has_fast_bf16", lambda: False)  # an AVX2 machine
    net, value_range = load_network("fast", None)
    assert Engine(net, device="cpu", value_range=value_range).precision == "int8"
    rt, rt_range = load_network("rt", None)  # no int8 path: fp32
    assert Engine(rt, device="cpu", value_range=rt_range).precision == "fp32"
    monkeypatch.setattr(engine_mod, "cpu_has_fast_bf16", lambda: True)
    net, value_range = load_network("fast", None)
    assert Engine(net, device="cpu", value_range=value_range).precision == "bf16"


SIGNAL_STACK_SCRIPT = """
import contextlib, ctypes, signal, subprocess, sys, time
import torch
from vidsr.models import build_model
from vidsr.upscale import int8
from vidsr.upscale.engine import Engine

def stack():
    now = int8._SignalStack()
    int8._sigaltstack()(None, ctypes.byref(now))
    return (now.ss_sp, now.ss_flags, now.ss_size)

if sys.argv[1] == "unguarded":
    int8.kept_signal_stack = contextlib.nullcontext
before = stack()
frame = torch.zeros(1, 24, 24, 3, dtype=torch.uint8)
engines = [Engine(build_model("fast"), device="cpu", precision="int8") for _ in range(2)]
for e in engines:
    e(frame)
for i in (0, 1):  # released in the order made: the second puts back the first's freed stack
    engines[i] = None
after = stack()
signal.signal(signal.SIGCHLD, lambda *a: None)  # as torch's DataLoader leaves it
for _ in range(3):
    subprocess.run(["true"])
    time.sleep(0.05)
print("same" if after == before else f"changed {before} -> {after}")
"""


@needs_int8
def test_released_engines_leave_the_signal_stack_as_it_was(cache, tmp_path):
    """OpenVINO's CPU plugin puts back a freed signal stack when compiled models are released
    in the order they were made; a Python signal handled on it afterwards wrote into freed memory
    or, once unmapped, killed the process (SIGSEGV: the test session died of it). vidsr keeps the
    thread's own stack around OpenVINO's calls (int8.kept_signal_stack)."""
    import subprocess
    import sys

    script = tmp_path / "stack.py"
    script.write_text(SIGNAL_STACK_SCRIPT)
    guarded = subprocess.run([sys.executable, str(script), "guarded"], capture_output=True,
                             text=True, timeout=300)  # fmt: skip
    assert guarded.returncode == 0, guarded.stderr[-2000:]
    assert guarded.stdout.strip().splitlines()[-1] == "same", guarded.stdout
    # Without the guard OpenVINO leaves a stack that is not the thread's (while it has the bug:
    # said here, not asserted, so that a fixed OpenVINO does not fail the test).
    bare = subprocess.run([sys.executable, str(script), "unguarded"], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    print(f"\nwithout kept_signal_stack: exit {bare.returncode}, {bare.stdout.strip()[-120:]}")
