"""`vidsr export CKPT_OR_MODEL --onnx`: the graph runs in ONNX Runtime (CPU) like torch does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vidsr.cli import main
from vidsr.models import build_model
from vidsr.models.weights import load_generator, sha256_of

onnx = pytest.importorskip("onnx", reason="needs the onnx package (pip install 'vidsr[onnx]')")
ort = pytest.importorskip(
    "onnxruntime", reason="needs onnxruntime to run the graph (pip install 'vidsr[onnx]')"
)

SIZES = [(1, 3, 20, 28), (2, 3, 12, 36)]  # two batches and aspect ratios: the axes are dynamic


def run_onnx(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def torch_out(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net.eval()(torch.from_numpy(x).float()).numpy()


def export(*args: str):
    return CliRunner().invoke(main, ["export", *args])


@pytest.mark.parametrize("name", ["srresnet", "srgan", "fast", "rt"])
def test_shipped_model_matches_torch_at_two_sizes(tmp_path, name):
    out = tmp_path / f"{name}.onnx"
    r = export(name, "--onnx", "-o", str(out))
    assert r.exit_code == 0, r.output
    assert f"sha256 {sha256_of(out)}" in r.output and "shipped" in r.output
    net, _ = load_generator(name)
    rng = np.random.default_rng(0)
    for shape in SIZES:
        x = rng.random(shape, dtype=np.float32)
        y = run_onnx(out, x)
        assert y.shape == (shape[0], 3, shape[2] * 4, shape[3] * 4)
        assert np.abs(y - torch_out(net, x)).max() < 1e-4
    graph = onnx.load(str(out)).graph
    assert "BatchNormalization" not in {n.op_type for n in graph.node}  # folded into the convs
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_fp16_graph_takes_and_gives_fp16_close_to_fp32(tmp_path):
    out = tmp_path / "fast16.onnx"
    r = export("fast", "--onnx", "--fp16", "-o", str(out))
    assert r.exit_code == 0 and "fp16" in r.output, r.output
    net, _ = load_generator("fast")
    x = np.random.default_rng(1).random(SIZES[1], dtype=np.float32)
    y = run_onnx(out, x.astype(np.float16))
    assert y.dtype == np.float16
    err = np.abs(y.astype(np.float32) - torch_out(net, x)).max()
    assert 0 < err < 1e-2  # half-precision rounding, nothing else
    full = tmp_path / "fast32.onnx"
    assert export("fast", "--onnx", "-o", str(full)).exit_code == 0
    assert out.stat().st_size < 0.6 * full.stat().st_size  # the weights really are half size


def test_a_training_checkpoint_exports_its_ema_weights_with_batchnorm_folded(tmp_path):
    torch.manual_seed(0)
    raw, ema = build_model("fast"), build_model("fast")
    for m in ema.modules():  # statistics that matter: folding them wrongly would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    ckpt = tmp_path / "last.pt"
    torch.save({"generator": raw.state_dict(), "ema": ema.state_dict(), "arch": {}}, ckpt)
    out = tmp_path / "mine.onnx"
    r = export(str(ckpt), "--model", "fast", "--onnx", "-o", str(out))
    assert r.exit_code == 0, r.output
    x = np.random.default_rng(2).random(SIZES[0], dtype=np.float32)
    assert np.abs(run_onnx(out, x) - torch_out(ema, x)).max() < 1e-4


def test_an_existing_file_is_kept_without_force_and_nothing_is_left_behind(tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"mine")
    r = export("fast", "--onnx", "-o", str(out))
    assert r.exit_code == 3 and "--force" in r.output and r.output.count("\n") == 1
    assert out.read_bytes() == b"mine"
    r = export("fast", "--onnx", "-o", str(out), "--force")
    assert r.exit_code == 0, r.output
    onnx.checker.check_model(str(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no temporary file


@pytest.mark.parametrize(
    "args, words",
    [
        (["bicubic", "--onnx"], "cannot export 'bicubic'"),
        (["nosuch.pt", "--onnx"], "neither a weights file nor a model"),
        (["srgan", "--model", "fast", "--onnx"], "contradicts"),
    ],
)
def test_bad_sources_are_one_line_and_write_nothing(tmp_path, args, words):
    out = tmp_path / "x.onnx"
    r = export(*args, "-o", str(out))
    assert r.exit_code == 4 and words in r.output and r.output.count("\n") == 1, r.output
    assert not out.exists()


def test_a_weights_file_needs_its_model_and_fp16_needs_onnx(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(build_model("fast").state_dict(), path)
    r = export(str(path), "--onnx", "-o", str(tmp_path / "x.onnx"))
    assert r.exit_code == 4 and "--model is needed" in r.output
    r = export(str(path), "--model", "fast", "--fp16", "-o", str(tmp_path / "x.pt"))
    assert r.exit_code == 2 and "--fp16 goes with --onnx" in r.output
