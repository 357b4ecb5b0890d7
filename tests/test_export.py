"""`vidsr export`: a training checkpoint to the small fp16 state_dict that ships in the package."""

import torch
from click.testing import CliRunner

from vidsr.cli import main
from vidsr.models import MODELS, build_model
from vidsr.models.weights import load_generator, sha256_of


def _checkpoint(tmp_path, name="fast", **arch):
    """A training checkpoint whose EMA weights (what gets exported) differ from the raw ones."""
    torch.manual_seed(0)
    raw, net = build_model(name, **arch), build_model(name, **arch)
    for m in net.modules():  # non-trivial BatchNorm statistics, so they are exported too
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "last.pt"
    torch.save({"generator": raw.state_dict(), "ema": net.state_dict(), "arch": arch}, path)
    return net, path


def _failed_cleanly(result) -> bool:
    """A VidsrError: friendly_errors printed one line and exited; no exception escaped."""
    return result.exit_code != 0 and isinstance(result.exception, SystemExit)


def test_export_writes_fp16_that_runs_like_the_checkpoint(tmp_path):
    net, ckpt = _checkpoint(tmp_path, **MODELS["fast"].arch)
    out = tmp_path / "fast.pt"
    result = CliRunner().invoke(main, ["export", str(ckpt), "--model", "fast", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"sha256 {sha256_of(out)}" in result.output
    state = torch.load(out, map_location="cpu", weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    assert out.stat().st_size < 0.6 * ckpt.stat().st_size  # half of the fp32 generator, no EMA twin
    exported, _ = load_generator("fast", out)
    x = torch.rand(1, 3, 12, 16)
    with torch.no_grad():
        diff = (exported(x) - net.eval()(x)).abs().max().item()
    assert 0 < diff < 1e-2  # fp16 rounding, nothing else

    # Never replaces a file silently.
    again = CliRunner().invoke(main, ["export", str(ckpt), "--model", "fast", "-o", str(out)])
    assert _failed_cleanly(again) and "--force" in again.output
    forced = ["export", str(ckpt), "--model", "fast", "-o", str(out), "--force"]
    assert CliRunner().invoke(main, forced).exit_code == 0


def test_export_refuses_a_checkpoint_of_another_architecture(tmp_path):
    _, ckpt = _checkpoint(tmp_path, blocks=2, channels=8, scale=4)
    out = tmp_path / "w.pt"
    result = CliRunner().invoke(main, ["export", str(ckpt), "--model", "srresnet", "-o", str(out)])
    assert _failed_cleanly(result)
    assert "registry" in result.output and not out.exists()
    # An architecture keyword the registry leaves at the builder's default counts too.
    _, ckpt = _checkpoint(tmp_path, upsample="shuffle")
    args = ["export", str(ckpt), "--model", "srresnet", "-o", str(out)]
    result = CliRunner().invoke(main, args)
    assert _failed_cleanly(result) and "upsample" in result.output and not out.exists()


def test_export_to_an_unwritable_place_is_one_line(tmp_path):
    _, ckpt = _checkpoint(tmp_path, **MODELS["fast"].arch)
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "w.pt"
    result = CliRunner().invoke(main, ["export", str(ckpt), "--model", "fast", "-o", str(out)])
    assert _failed_cleanly(result) and result.exit_code == 3
    assert result.output.count("\n") == 1 and "cannot write" in result.output


def test_export_of_a_damaged_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    out = tmp_path / "x.pt"
    result = CliRunner().invoke(main, ["export", str(bad), "--model", "srgan", "-o", str(out)])
    assert _failed_cleanly(result) and "cannot read" in result.output and not out.exists()
