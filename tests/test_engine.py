"""Engine: malloc tuning, batch sizing, out-of-memory fallback, and the slot ring on the CPU."""

from __future__ import annotations

import sys

import av
import numpy as np
import pytest
import torch
from media import make_clip
from torch import nn

from vidsr.config import UpscaleConfig
from vidsr.engine import Engine, batch_for_memory, parse_tile, tune_malloc
from vidsr.errors import VidsrError
from vidsr.models import SRResNet
from vidsr.pipeline import upscale_file
from vidsr.slots import SlotRing


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
    with pytest.raises(VidsrError):
        parse_tile("4")
    with pytest.raises(VidsrError):
        parse_tile("big")


def test_oom_halves_batch_then_tiles_and_loses_nothing():
    frames = torch.randint(0, 256, (4, 64, 80, 3), dtype=torch.uint8)
    reference = Engine(tiny(), device="cpu", precision="fp32", tile="off")(frames)
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
    engine = Engine(Budget(tiny(), pixels=10), device="cpu", precision="fp32", tile="off")
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
