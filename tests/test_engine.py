"""Engine: malloc tuning, batch sizing, out-of-memory fallback, and the slot ring on the CPU."""

from __future__ import annotations

import sys

import av
import numpy as np
import pytest
import torch
from media import make_clip
from torch import nn

from vidsr.config import UpscaleConfig, parse_tile
from vidsr.errors import VidsrError
from vidsr.models import SRResNet
from vidsr.upscale.engine import Engine, batch_for_memory, tune_malloc
from vidsr.upscale.pipeline import upscale_file
from vidsr.upscale.slots import SlotRing


class Budget(nn.Module):
    """Wraps a network and fails like a full device when one call holds more than `pixels`."""

    def __init__(self, inner: nn.Module, pixels: int):
        super().__init__()
        self.inner, self.pixels, self.scale = inner, pixels, inner.scale
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        if x.shape[0] * x.shape[2] * x.shape[3] > self.pixels:
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 2.00 GiB (simulated)"
            )
        return self.inner(x)


def tiny() -> SRResNet:
    torch.manual_seed(0)
    return SRResNet(blocks=1, channels=8)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_malloc_tuning_applies_on_glibc():
    assert tune_malloc() is True


def test_batch_for_memory():
    assert batch_for_memory(100, 1000) == 8  # 80% headroom
    assert batch_for_memory(100, 50) == 0
    assert batch_for_memory(1, 10**12, cap=16) == 16


def test_auto_batch_is_one_on_cpu():
    assert Engine(tiny(), device="cpu").auto_batch_size(180, 320) == 1


def test_parse_tile():
    assert parse_tile("auto") is None and parse_tile("off") == 0 and parse_tile("64") == 64
    for given in ("auto", "off", "64"):  # a parsed value parses to itself (configs re-check)
        assert parse_tile(parse_tile(given)) == parse_tile(given)


@pytest.mark.parametrize("tile, parsed", [("off", 0), ("auto", None), ("32", 32)])
def test_tile_from_the_command_line_reaches_the_engine(tmp_path, tile, parsed, monkeypatch):
    from click.testing import CliRunner

    import vidsr.jobs.batch as batch_mod
    from vidsr.cli import main

    seen = []
    real = batch_mod.build_engine
    monkeypatch.setattr(batch_mod, "build_engine", lambda c, p: seen.append(c.tile) or real(c, p))
    src = tmp_path / "in.mp4"
    make_clip(src, frames=2, audio=False)
    r = CliRunner().invoke(main, ["upscale", str(src), "--model", "bicubic", "--tile", tile])
    assert r.exit_code == 0, r.output
    assert seen == [parsed]
    with pytest.raises(ValueError, match="at least 16"):
        parse_tile("4")
    with pytest.raises(ValueError, match="auto, off or a tile size"):
        parse_tile("big")


def test_oom_halves_batch_then_tiles_and_loses_nothing():
    frames = torch.randint(0, 256, (4, 64, 80, 3), dtype=torch.uint8)
    reference = Engine(tiny(), device="cpu", precision="fp32", tile=0)(frames)
    notes: list[str] = []
    model = Budget(tiny(), pixels=2500)  # not one frame: tiles of 20 + 2 x 13 context
    engine = Engine(model, device="cpu", precision="fp32", warn=notes.append)
    out = engine(frames)
    assert any("batch size lowered to 2" in n for n in notes)
    assert any("batch size lowered to 1" in n for n in notes)
    assert any("tiles" in n for n in notes)
    assert engine.max_batch == 1 and engine.tile == 20
    assert (out.int() - reference.int()).abs().max().item() <= 1  # every frame, all its pixels


def test_oom_with_tiles_off_is_an_error():
    engine = Engine(Budget(tiny(), pixels=10), device="cpu", precision="fp32", tile=0)
    with pytest.raises(VidsrError, match="tile off"):
        engine(torch.zeros(1, 16, 16, 3, dtype=torch.uint8))


def test_other_runtime_errors_pass_through():
    class Broken(nn.Module):
        scale = 4

        def forward(self, x):
            raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        Engine(Broken(), device="cpu")(torch.zeros(1, 8, 8, 3, dtype=torch.uint8))


def test_pipeline_survives_oom_without_losing_frames(tmp_path):
    src = tmp_path / "in.mp4"
    make_clip(src, width=32, height=24, frames=10, audio=False)
    notes: list[str] = []
    engine = Engine(Budget(tiny(), pixels=2 * 32 * 24), device="cpu", precision="fp32")
    config = UpscaleConfig(model="srresnet", batch_size=4, encode=UpscaleConfig().encode)
    result = upscale_file(src, tmp_path / "out.mp4", config, engine=engine, warn=notes.append)
    assert result.frames == 10
    assert any("batch size lowered" in n for n in notes)
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 10


def test_slot_ring_on_cpu_runs_the_engine_in_place():
    engine = Engine(tiny(), device="cpu", precision="fp32")
    ring = SlotRing(engine, batch=2, height=12, width=16, slots=2)
    assert ring.free_in.qsize() == 2 and ring.free_out.qsize() == 2
    pointers = set()
    for i in range(5):
        frames = np.random.default_rng(i).integers(0, 256, (2, 12, 16, 3), dtype=np.uint8)
        slot = ring.fill(ring.free_in.get(), frames, [2 * i, 2 * i + 1])
        assert slot.dev is slot.host  # the CPU's "device copy" is the host buffer itself
        out = ring.run(slot, ring.free_out.get())
        ring.free_in.put(slot)
        got = out.frames()
        assert out.pts == [2 * i, 2 * i + 1]
        expected = engine(torch.from_numpy(frames)).numpy()
        np.testing.assert_array_equal(got, expected)
        pointers.add(got.__array_interface__["data"][0])
        ring.free_out.put(out)
    assert len(pointers) <= 2  # outputs land in the preallocated slots, nothing new per frame


def test_slot_ring_short_last_batch():
    engine = Engine(tiny(), device="cpu", precision="fp32")
    ring = SlotRing(engine, batch=4, height=8, width=8)
    frames = np.zeros((3, 8, 8, 3), dtype=np.uint8)
    out = ring.run(ring.fill(ring.free_in.get(), frames, [0, 1, 2]), ring.free_out.get())
    assert out.frames().shape == (3, 32, 32, 3)


# -- the memory budget on a CPU -------------------------------------------------------------------


def test_memory_sizes_parse_with_units():
    from vidsr.config import parse_memory

    assert parse_memory("auto") is None
    assert parse_memory("2G") == 2 * 2**30 and parse_memory("1500M") == 1500 * 2**20
    assert parse_memory("0.5GiB") == 2**29 and parse_memory("64mb") == 64 * 2**20
    for bad in ("2", "lots", "1M", "-1G", True):
        with pytest.raises(ValueError):
            parse_memory(bad)


def test_a_frame_over_the_memory_budget_is_tiled_and_equals_the_whole_frame():
    torch.manual_seed(0)
    model = SRResNet(blocks=2, channels=16)
    budget = 64 * 2**20
    engine = Engine(model, device="cpu", precision="fp32", memory=budget)
    assert engine.memory_tile(96, 128) is None  # 96x128 at a few kB a pixel fits 64 MiB
    tile = engine.memory_tile(720, 576)
    per_pixel = engine._per_pixel
    assert per_pixel * 720 * 576 > budget  # the whole frame would not fit, a padded tile does
    assert tile is not None and per_pixel * (tile + 2 * engine.pad) ** 2 <= budget
    assert engine.memory_note(720, 576) == f"tiles {tile}x{tile} (memory budget 0.1 GiB)"
    assert Engine(model, device="cpu", tile=0, memory=budget).memory_tile(720, 576) is None
    # Tiled, a frame comes out as it does whole: a network 40x hungrier tiles a 96x128 frame.
    whole = Engine(model, device="cpu", precision="fp32", tile=0)
    hungry = Engine(model, device="cpu", precision="fp32", memory=budget)
    hungry._per_pixel = per_pixel * 40
    assert hungry.memory_tile(96, 128) is not None
    frames = torch.randint(0, 256, (1, 96, 128, 3), dtype=torch.uint8)
    torch.testing.assert_close(hungry(frames).float(), whole(frames).float(), atol=1, rtol=0)


def test_the_first_line_says_when_a_budget_tiles(tmp_path):
    from vidsr.jobs.batch import BatchRunner

    src = tmp_path / "in.mp4"
    make_clip(src, width=640, height=480, frames=2, vfr=False, audio=False)
    for memory, tiled in (("128M", True), ("8G", False)):
        lines = []
        config = UpscaleConfig(model="fast", device="cpu", precision="fp32", memory=memory)
        BatchRunner(config).run_one(src, tmp_path / f"o{memory}.mp4", inform=lines.append)
        assert ("tiles " in lines[0]) is tiled, lines[0]


def test_every_option_parses_its_own_output():
    """A config checks its values again when it is built from parsed ones (CLI -> config)."""
    from vidsr.config import OPTIONS

    samples = {"tile": ["off", "auto", "48"], "memory": ["auto", "2G"], "crf": ["auto", "20"],
               "batch_size": ["auto", "2"], "outscale": ["auto", "2"], "start": ["1:02.5"],
               "container": ["mkv", "source"], "ray": ["auto"], "pix_fmt": ["yuv420p10le"],
               "crop": ["auto", "64:48:0:8"], "deinterlace": ["field"],
               "temporal": ["off", "auto", "0.5"]}  # fmt: skip
    for opt in OPTIONS:
        for given in [opt.default, *samples.get(opt.name, [])]:
            once = opt.parse(given)
            assert opt.parse(once) == once, (opt.name, given)


@pytest.mark.parametrize(
    ("cap", "fast"),
    [("AVX2", False), ("avx512_core", False), ("AVX512_CORE_BF16", True), ("ALL", True)],
)
def test_an_isa_cap_below_bf16_makes_auto_fp32(monkeypatch, tmp_path, cap, fast):
    """ONEDNN_MAX_CPU_ISA=AVX2 on a bf16 CPU: oneDNN would emulate bf16, so auto takes fp32."""
    from vidsr.upscale import engine as engine_mod

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu avx2 avx512f avx512_bf16\n")
    real_open = open
    monkeypatch.setattr(
        "builtins.open",
        lambda p, *a, **k: real_open(cpuinfo if p == "/proc/cpuinfo" else p, *a, **k),
    )
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    engine_mod.cpu_has_fast_bf16.cache_clear()
    try:
        assert engine_mod.cpu_has_fast_bf16() is fast
        want = "bf16" if fast else "fp32"
        assert engine_mod.resolve_precision("auto", torch.device("cpu")) == want
    finally:
        engine_mod.cpu_has_fast_bf16.cache_clear()
