"""The CUDA path: pinned slots, copy streams, events, fp16, auto batch, OOM fallback.

Marked `gpu`: skipped (with the reason) where no CUDA device is present. Run on a GPU with
`pytest -m gpu tests/test_gpu.py -v`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidsr.config import UpscaleConfig
from vidsr.engine import Engine
from vidsr.models import SRResNet
from vidsr.pipeline import upscale_file
from vidsr.slots import SlotRing

pytestmark = pytest.mark.gpu


def model() -> SRResNet:
    torch.manual_seed(0)
    return SRResNet(blocks=4, channels=32)


def test_cuda_defaults_fp16_channels_last():
    engine = Engine(model(), device="cuda")
    assert engine.precision == "fp16"
    w = engine.model.head[0].weight
    assert w.dtype == torch.float16 and w.is_contiguous(memory_format=torch.channels_last)


def test_slots_are_pinned_and_streams_are_separate():
    engine = Engine(model(), device="cuda")
    ring = SlotRing(engine, batch=2, height=32, width=48)
    slot = ring.free_in.get()
    out = ring.free_out.get()
    assert slot.host.is_pinned() and out.host.is_pinned()
    assert slot.dev.is_cuda and out.dev.is_cuda
    streams = {ring.h2d.stream, ring.d2h.stream, ring.compute.stream}
    assert len(streams) == 3


def test_slot_ring_matches_the_cpu_reference():
    frames = np.random.default_rng(0).integers(0, 256, (2, 32, 48, 3), dtype=np.uint8)
    ref = Engine(model(), device="cpu", precision="fp32")(torch.from_numpy(frames)).numpy()
    engine = Engine(model(), device="cuda", precision="fp32")
    torch.backends.cudnn.allow_tf32 = False
    ring = SlotRing(engine, batch=2, height=32, width=48)
    outs = []
    for i in range(6):  # more batches than slots: reuse is ordered by events only
        slot = ring.fill(ring.free_in.get(), frames, [i, i])
        outs.append(ring.run(slot, ring.free_out.get()))
        ring.free_in.put(slot)
        if len(outs) == 3:
            done = outs.pop(0)
            assert np.abs(done.frames().astype(int) - ref.astype(int)).max() <= 1
            ring.free_out.put(done)


def test_no_device_allocations_in_steady_state():
    engine = Engine(model(), device="cuda")
    ring = SlotRing(engine, batch=2, height=64, width=64)
    frames = np.zeros((2, 64, 64, 3), dtype=np.uint8)

    def one():
        slot = ring.fill(ring.free_in.get(), frames, [0, 1])
        out = ring.run(slot, ring.free_out.get())
        ring.free_in.put(slot)
        out.frames()
        ring.free_out.put(out)

    for _ in range(4):
        one()
    torch.cuda.synchronize()
    reserved = torch.cuda.memory_reserved()
    for _ in range(8):
        one()
    torch.cuda.synchronize()
    assert torch.cuda.memory_reserved() == reserved  # the caching allocator grew no new blocks


def test_auto_batch_fits_free_memory():
    engine = Engine(model(), device="cuda")
    batch = engine.auto_batch_size(180, 320)
    assert batch >= 2
    free, _ = torch.cuda.mem_get_info()
    assert free > 0


def test_real_oom_falls_back_to_tiles():
    notes: list[str] = []
    engine = Engine(SRResNet(), device="cuda", warn=notes.append)
    free, _ = torch.cuda.mem_get_info()
    # A frame whose activations (64 ch x 16 px x fp16 at 4x) exceed free memory: about 2 GB a Mpx.
    side = int((free / 2e9) ** 0.5 * 1000) + 512
    frames = torch.zeros((1, side, side, 3), dtype=torch.uint8, device="cuda")
    out = engine(frames)
    assert out.shape == (1, 4 * side, 4 * side, 3)
    assert any("tiles" in n for n in notes)


def test_pipeline_on_cuda(tmp_path):
    from media import make_clip

    src = tmp_path / "in.mp4"
    make_clip(src, width=64, height=48, frames=12)
    engine = Engine(model(), device="cuda")
    config = UpscaleConfig(model="srresnet", device="cuda", batch_size="auto")
    result = upscale_file(src, tmp_path / "out.mp4", config, engine=engine)
    assert result.frames == 12
