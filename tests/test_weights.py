"""The one reader of weights files: every kind it reads, and every malformed file it refuses in one
line (through the commands that take weights: upscale, eval, train --init, train --resume)."""

import math
import time

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from tests.media import make_clip
from vidsr.cli import main
from vidsr.errors import OutputError, WeightsError
from vidsr.media.staging import atomic_path, save_torch
from vidsr.models import build_model
from vidsr.models.weights import SHIPPED, check_arch, read_shipped, read_weights

TINY = {"blocks": 1, "channels": 8, "scale": 4}


def _tiny_state():
    torch.manual_seed(0)
    return build_model("srresnet", **TINY).state_dict()


def _checkpoint(**over):
    state = _tiny_state()
    ckpt = {"format": "vidsr-checkpoint", "format_version": 1, "model": "srresnet",
            "arch": dict(TINY), "generator": state, "ema": state, "step": 1}  # fmt: skip
    return {**ckpt, **over}


def _failed_in_one_line(result, code: int = 4) -> str:
    """A handled VidsrError: one line on stderr, its exit code, no exception escaped."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vidsr: error:"), result.output
    return lines[0]


# -- what the reader reads ----------------------------------------------------------------------


def test_reads_every_kind_of_file(tmp_path):
    state = _tiny_state()
    torch.save(state, tmp_path / "plain.pt")
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()},
               tmp_path / "export.pt")  # fmt: skip
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    torch.save(_checkpoint(ema=ema), tmp_path / "last.pt")
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "ddp.pt")

    plain = read_weights(tmp_path / "plain.pt")
    assert (plain.kind, plain.arch, plain.model_name, plain.checkpoint) == ("state_dict", {}, None,
                                                                            None)  # fmt: skip
    assert read_weights(tmp_path / "export.pt").kind == "export"
    ckpt = read_weights(tmp_path / "last.pt")
    assert (ckpt.kind, ckpt.arch, ckpt.model_name) == ("checkpoint", TINY, "srresnet")
    assert torch.equal(ckpt.state["head.0.weight"], ema["head.0.weight"])  # EMA first
    assert ckpt.checkpoint["step"] == 1
    assert read_weights(tmp_path / "ddp.pt").state.keys() == state.keys()
    shipped = read_shipped("fast")
    assert shipped.kind == "shipped" and shipped.record is SHIPPED["fast"]


def test_checkpoint_without_ema_reads_the_generator(tmp_path):
    torch.save(_checkpoint(ema=None), tmp_path / "g.pt")
    assert read_weights(tmp_path / "g.pt").state.keys() == _tiny_state().keys()


@pytest.mark.parametrize(
    ("arch", "words"),
    [
        ({"blocks": 10**7}, "blocks = 10000000 is not an integer 1..64"),
        ({"channels": 4}, "channels = 4 is not an integer 8..256"),
        ({"scale": 3}, "scale = 3 is not one of 2, 4, 8"),
        ({"scale": "4"}, "scale = '4' is not one of 2, 4, 8"),
        ({"blocks": True}, "blocks = True"),
        ({"blocks": 2.0}, "blocks = 2.0"),
        ({"upsample": "magic"}, "upsample = 'magic'"),
        ({"layers": 3}, "unknown arch key 'layers'"),
        ("big", "arch is a str"),
    ],
)
def test_arch_values_are_bounded_and_typed(arch, words):
    with pytest.raises(WeightsError, match=words.replace("(", r"\(")):
        check_arch(arch, "f.pt")


# -- what it refuses, through the commands ------------------------------------------------------


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    Image.new("RGB", (32, 32), (90, 120, 30)).save(folder / "a.png")
    return folder


def _eval(bench, weights):
    return CliRunner().invoke(main, ["eval", "--model", "srresnet", "--weights", str(weights),
                                     "--data", str(bench)])  # fmt: skip


MALFORMED = {
    "arch_string": (lambda: _checkpoint(arch="blocks=16"), "arch is a str"),
    "ema_empty": (lambda: _checkpoint(ema={}), "ema weights) is empty"),
    "non_tensor": (
        lambda: {**_tiny_state(), "head.0.weight": [1.0, 2.0]},
        "holds a list, not a tensor",
    ),
    "a_list": (lambda: [torch.zeros(3)], "holds a list"),
    "ema_a_string": (lambda: _checkpoint(ema="weights"), "is a str"),
    "nan": (lambda: {**_tiny_state(), "head.0.bias": torch.full((8,), math.nan)}, "non-finite"),
    "inf": (
        lambda: _checkpoint(ema={**_tiny_state(), "tail.bias": torch.full((3,), math.inf)}),
        "non-finite",
    ),  # fmt: skip
    "model_name": (lambda: _checkpoint(model=7), "model name is a int"),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_eval_refuses_a_malformed_file_in_one_line(tmp_path, bench, kind):
    make, words = MALFORMED[kind]
    torch.save(make(), tmp_path / "w.pt")
    assert words in _failed_in_one_line(_eval(bench, tmp_path / "w.pt"))


def test_huge_arch_is_refused_before_anything_is_built(tmp_path, bench):
    """{"blocks": 10**7} would need gigabytes: eval, upscale, --init and --resume refuse it."""
    torch.save(_checkpoint(arch={"blocks": 10**7, "channels": 64, "scale": 4}), tmp_path / "big.pt")
    t0 = time.perf_counter()
    assert "blocks = 10000000" in _failed_in_one_line(_eval(bench, tmp_path / "big.pt"))

    clip = tmp_path / "clip.mp4"
    make_clip(clip, width=32, height=24, frames=2, audio=False)
    up = CliRunner().invoke(main, ["upscale", str(clip), "--model", "srresnet", "--weights",
                                   str(tmp_path / "big.pt"), "-q"])  # fmt: skip
    assert "blocks = 10000000" in _failed_in_one_line(up)
    assert not (tmp_path / "clip_x4.mp4").exists()

    train = ["train", "--data", str(bench), "--batch-size", "1", "--crop", "32", "--steps", "1",
             "--workers", "0", "--device", "cpu", "-q"]  # fmt: skip
    init = CliRunner().invoke(main, [*train, "--out", str(tmp_path / "a"), "--init",
                                     str(tmp_path / "big.pt")])  # fmt: skip
    assert "blocks = 10000000" in _failed_in_one_line(init)

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes((tmp_path / "big.pt").read_bytes())
    resume = CliRunner().invoke(main, [*train, "--out", str(tmp_path / "run"), "--resume"])
    assert "blocks = 10000000" in _failed_in_one_line(resume)
    assert time.perf_counter() - t0 < 60  # nothing of 10**7 blocks was ever built


def test_upscale_and_init_refuse_nan_weights(tmp_path):
    state = build_model("srresnet", **TINY).state_dict()
    state["head.0.weight"][0, 0, 0, 0] = math.nan
    torch.save(state, tmp_path / "nan.pt")
    clip = tmp_path / "clip.mp4"
    make_clip(clip, width=32, height=24, frames=2, audio=False)
    up = CliRunner().invoke(main, ["upscale", str(clip), "--model", "srresnet", "--weights",
                                   str(tmp_path / "nan.pt"), "-q"])  # fmt: skip
    assert "non-finite" in _failed_in_one_line(up)
    assert not (tmp_path / "clip_x4.mp4").exists()
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    args = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "r"),
            "--init", str(tmp_path / "nan.pt"), "--steps", "1", "-q"]  # fmt: skip
    init = CliRunner().invoke(main, args)
    assert "non-finite" in _failed_in_one_line(init)


def test_resume_refuses_a_malformed_checkpoint_in_one_line(tmp_path, bench):
    train = ["train", "--data", str(bench), "--batch-size", "1", "--crop", "32", "--steps", "2",
             "--workers", "0", "--device", "cpu", "-q", "--resume"]  # fmt: skip
    for i, (ckpt, words) in enumerate([
        (_checkpoint(opt_g="adam"), "cannot be resumed"),
        (_checkpoint(step="one"), "not a count"),
        (_checkpoint(generator={}), "generator weights) is empty"),
        (_checkpoint(format_version=99), "newer vidsr"),
        ({"generator": _tiny_state()}, "not a vidsr training checkpoint"),
        (_checkpoint(config="lr=1"), "config is a str"),
    ]):  # fmt: skip
        run = tmp_path / f"run{i}"
        run.mkdir()
        torch.save(ckpt, run / "last.pt")
        result = CliRunner().invoke(main, [*train, "--out", str(run),
                                           "--recipe", str(_tiny_recipe(tmp_path))])  # fmt: skip
        assert words in _failed_in_one_line(result), words


def _tiny_recipe(tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text('model = "srresnet"\narch = {blocks = 1, channels = 8}\n')
    return recipe


# -- atomic writes ------------------------------------------------------------------------------


def test_atomic_path_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "last.pt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".pt" and tmp.name.startswith(".")
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
    save_torch({"a": torch.ones(2)}, target)
    assert torch.equal(torch.load(target, weights_only=True)["a"], torch.ones(2))
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_write_to_an_impossible_place_is_an_output_error(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match="cannot write"):
        save_torch({"a": torch.ones(2)}, tmp_path / "afile" / "w.pt")
    assert (tmp_path / "afile").read_text() == "x"


def _malicious(path, protocol: int) -> None:
    import os
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path.write_bytes(pickle.dumps(Payload(), protocol=protocol))


@pytest.mark.parametrize(
    "kind, words",
    [
        ("random bytes", "not a PyTorch .pt/.pth or .safetensors file"),
        ("empty", "is empty (0 bytes)"),
        ("zip slip", "names a path outside itself ('../evil.txt'); refused"),
        ("pickle 2", "loading it would run posix.system; refused"),
        ("pickle 4", "loading it would run posix.system; refused"),
        ("folder", "is a folder, not a weights file"),
        ("cut short", "its archive is damaged or cut short"),
        ("plain zip", "a zip archive without PyTorch's records"),
    ],
)
def test_a_bad_weights_file_is_one_plain_line_exit_4(tmp_path, kind, words):
    import random
    import zipfile

    path = tmp_path / "w.pth"
    if kind == "random bytes":
        path.write_bytes(random.Random(0).randbytes(5000))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "zip slip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("../evil.txt", "x")
            z.writestr("archive/data.pkl", b"junk")
    elif kind.startswith("pickle"):
        _malicious(path, int(kind[-1]))
    elif kind == "folder":
        path.mkdir()
    elif kind == "cut short":
        torch.save({"w": torch.zeros(4)}, path)
        path.write_bytes(path.read_bytes()[:200])
    elif kind == "plain zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("readme.txt", "hello")
    clip = tmp_path / "c.mp4"
    make_clip(clip, frames=2, audio=False)
    for args in (["upscale", str(clip), "--model", "fast", "--weights", str(path)],
                 ["upscale", str(clip), "--model", str(path)]):  # fmt: skip
        r = CliRunner().invoke(main, args)
        assert r.exit_code == WeightsError.exit_code == 4, r.output
        assert r.output.count("\n") == 1 and words in r.output, r.output
        assert "weights_only" not in r.output and "Traceback" not in r.output
    assert not (tmp_path / "c_x4.mp4").exists()


def test_a_garbage_checkpoint_for_resume_is_one_line(tmp_path):
    import random

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(random.Random(1).randbytes(3000))
    r = CliRunner().invoke(main, ["train", "--resume", "--out", str(tmp_path / "run")])
    assert r.exit_code == 4, r.output
    assert "mmap" not in r.output and "cannot read weights from" in r.output


@pytest.mark.parametrize("text", ['steps = "many"\n', "steps = [\n", "bogus = 1\n"])
def test_a_bad_recipe_is_a_bad_option_exit_2(tmp_path, text):
    recipe = tmp_path / "r.toml"
    recipe.write_text(text)
    r = CliRunner().invoke(main, ["train", "--recipe", str(recipe), "--data", str(tmp_path),
                                  "--out", str(tmp_path / "run")])  # fmt: skip
    assert r.exit_code == 2, r.output
    assert r.output.count("\n") == 1 and "Traceback" not in r.output
