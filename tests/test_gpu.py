"""The CUDA path: pinned slots, copy streams, events, fp16, auto batch, OOM fallback.

Marked `gpu`: skipped (with the reason) where no CUDA device is present. Run on a GPU with
`pytest -m gpu tests/test_gpu.py -v`.
"""

from __future__ import annotations

from collections import deque
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from media import pattern

from vidsr.config import EncodeConfig, UpscaleConfig
from vidsr.models import SRResNet
from vidsr.models.weights import load_generator
from vidsr.upscale.engine import Engine
from vidsr.upscale.pipeline import upscale_file
from vidsr.upscale.slots import SlotRing

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


@pytest.fixture
def memory_cap():
    """Cap this process's CUDA memory (torch.cuda.set_per_process_memory_fraction) to `gib`."""
    total = torch.cuda.get_device_properties(0).total_memory

    def cap(gib: float) -> None:
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(min(1.0, gib * 2**30 / total))

    yield cap
    torch.cuda.set_per_process_memory_fraction(1.0)
    torch.cuda.empty_cache()


def test_oom_under_a_memory_cap_halves_the_batch_then_tiles(memory_cap):
    frames = torch.randint(0, 256, (2, 768, 768, 3), dtype=torch.uint8, device="cuda")
    torch.manual_seed(0)
    # The reference, uncapped, in fixed tiles: tiles join without seams, so sizes may differ.
    ref = Engine(SRResNet(), device="cuda", tile=256)(frames)
    notes: list[str] = []
    torch.manual_seed(0)  # the same weights
    engine = Engine(SRResNet(), device="cuda", warn=notes.append)
    # SRResNet at 768x768 -> 3072x3072 in fp16 needs about 1.2 GB per 64-channel activation at
    # full size: two frames at once cannot fit in 2 GiB, one frame whole cannot either.
    memory_cap(2.0)
    out = engine(frames)
    assert out.shape == (2, 3072, 3072, 3)
    assert any("batch size lowered to 1" in n for n in notes), notes
    assert any("tiles" in n for n in notes), notes
    assert (out.int() - ref.int()).abs().max() <= 2  # fp16 rounding of other conv algorithms


def test_auto_batch_picks_more_than_one_and_that_batch_runs_without_oom():
    notes: list[str] = []
    engine = Engine(SRResNet(), device="cuda", warn=notes.append)
    batch = engine.auto_batch_size(540, 960)
    assert batch > 1
    frames = torch.randint(0, 256, (batch, 540, 960, 3), dtype=torch.uint8, device="cuda")
    out = engine(frames)
    torch.cuda.synchronize()
    assert out.shape == (batch, 2160, 3840, 3)
    assert not notes and engine.max_batch is None and not engine.tile  # no OOM on the way


def test_auto_batch_under_a_memory_cap_still_runs(memory_cap):
    """The free memory the probe sees ignores a per-process cap: what it picks must still run."""
    memory_cap(6.0)
    engine = Engine(SRResNet(), device="cuda")
    batch = engine.auto_batch_size(540, 960)
    notes: list[str] = []
    engine.warn = notes.append
    frames = torch.zeros((batch, 540, 960, 3), dtype=torch.uint8, device="cuda")
    engine(frames)
    assert batch >= 1 and not notes, (batch, notes)


def test_pipeline_on_cuda(tmp_path):
    from media import make_clip

    src = tmp_path / "in.mp4"
    make_clip(src, width=64, height=48, frames=12)
    engine = Engine(model(), device="cuda")
    config = UpscaleConfig(model="srresnet", device="cuda", batch_size="auto")
    result = upscale_file(src, tmp_path / "out.mp4", config, engine=engine)
    assert result.frames == 12


class Delayed:
    """An engine whose work queues behind a long kernel on the compute stream (SlotRing's view
    of an engine is its device, its scale and the call)."""

    def __init__(self, engine: Engine, cycles: int):
        self.engine, self.cycles = engine, cycles
        self.device, self.scale = engine.device, engine.scale

    def __call__(self, frames, out=None):
        torch.cuda._sleep(self.cycles)  # on the current stream: the compute lane's
        return self.engine(frames, out=out)


def test_slot_ring_orders_copies_and_compute_with_events():
    """Every lane is slowed in turn; only the events keep each buffer from being read early or
    overwritten late. A missing wait shows as another batch's (or stale) frames."""
    cycles = 20_000_000  # about 10 ms at 2 GHz: far longer than the copies and the network
    rng = np.random.default_rng(1)
    batches = [rng.integers(0, 256, (2, 32, 48, 3), dtype=np.uint8) for _ in range(8)]
    cpu = Engine(model(), device="cpu", precision="fp32")
    refs = [cpu(torch.from_numpy(b)).numpy() for b in batches]
    torch.backends.cudnn.allow_tf32 = False
    try:
        ring = SlotRing(Delayed(Engine(model(), device="cuda", precision="fp32"), cycles),
                        batch=2, height=32, width=48, slots=2)  # fmt: skip
        for slot in list(ring.free_out.queue):
            slot.dev.fill_(77)  # stale content a premature copy would return
        flight: deque = deque()
        checked = 0

        def check(done) -> None:
            nonlocal checked
            i = done.pts[0]
            assert np.abs(done.frames().astype(int) - refs[i].astype(int)).max() <= 1, i
            ring.free_out.put(done)
            checked += 1

        for i, frames in enumerate(batches):
            slot = ring.fill(ring.free_in.get(), frames, [i, i])  # must wait for its last H2D
            for lane in (ring.h2d, ring.d2h):  # the copies of this batch start late
                with torch.cuda.stream(lane.stream):
                    torch.cuda._sleep(cycles)
            if len(flight) == 2:
                check(flight.popleft())
            flight.append(ring.run(slot, ring.free_out.get()))
            ring.free_in.put(slot)
        while flight:
            check(flight.popleft())
        assert checked == len(batches)
    finally:
        torch.backends.cudnn.allow_tf32 = True


@pytest.mark.parametrize("precision, worst, mean", [("fp16", 4, 0.5), ("bf16", 16, 2.0)])
def test_half_precision_output_is_close_to_fp32(precision, worst, mean):
    net, _ = load_generator("srresnet")  # the shipped weights: real activations, real ranges
    frames = torch.from_numpy(np.stack([pattern(i, 96, 64) for i in range(2)])).cuda()
    torch.backends.cudnn.allow_tf32 = False
    try:
        ref = Engine(net, device="cuda", precision="fp32")(frames).int()
    finally:
        torch.backends.cudnn.allow_tf32 = True
    net, _ = load_generator("srresnet")  # Engine folds BatchNorm in place: a fresh copy
    out = Engine(net, device="cuda", precision=precision)(frames).int()
    diff = (out - ref).abs().float()
    assert diff.max() <= worst and diff.mean() <= mean, (diff.max(), diff.mean())


def ten_bit_gradient_clip(path, width=128, height=64, frames=4):
    """A 10-bit clip whose horizontal ramp has about 4x more levels than 8 bits can hold."""
    tb = Fraction(1, 25)
    ramp = np.linspace(24000, 28000, width)  # 16-bit units: ~60 10-bit levels, ~15 8-bit ones
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = width, height, "yuv420p10le"
        v.options = {"qp": "0", "preset": "ultrafast"}  # lossless: the levels survive
        v.time_base = v.codec_context.time_base = tb
        v.codec_context.colorspace = v.codec_context.color_primaries = 1
        v.codec_context.color_trc, v.codec_context.color_range = 1, 1
        for i in range(frames):
            rgb = np.broadcast_to(ramp[None, :, None], (height, width, 3)).astype(np.uint16)
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb48le")
            f = f.reformat(format="yuv420p10le", dst_colorspace=1, dst_color_range=1)
            f.pts, f.time_base = i, tb
            out.mux(v.encode(f))
        out.mux(v.encode(None))


def luma_rows(path) -> np.ndarray:
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        assert frame.format.name == "yuv420p10le"
        return frame.to_ndarray()[: frame.height]  # the Y plane, 10-bit values


def test_ten_bit_source_through_fp16_stays_ten_bit(tmp_path):
    src = tmp_path / "ramp10.mkv"
    ten_bit_gradient_clip(src)
    lossless = EncodeConfig(codec="libx264", crf=0)
    outs = {}
    for device, precision in (("cuda", "fp16"), ("cpu", "fp32")):
        config = UpscaleConfig(model="fast", device=device, precision=precision, encode=lossless)
        outs[device] = tmp_path / f"{device}.mkv"
        upscale_file(src, outs[device], config)
    gpu, cpu = luma_rows(outs["cuda"]).astype(int), luma_rows(outs["cpu"]).astype(int)
    row = gpu[gpu.shape[0] // 2]
    # 8-bit frames out of the model would leave ~16 levels of the ramp's ~55 in a row.
    assert len(np.unique(row)) >= 40, np.unique(row)
    # 8-bit frames into it, or bf16 (measured on the CPU: mean 0.8, max 6), are further off.
    diff = np.abs(gpu - cpu)
    assert diff.mean() < 0.4 and diff.max() <= 4, (diff.mean(), diff.max())


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_engine_matches_eager(mode):
    frames = torch.randint(0, 256, (2, 32, 48, 3), dtype=torch.uint8, device="cuda")
    eager = Engine(model(), device="cuda")(frames).int()
    torch._dynamo.reset()
    compiled = Engine(model(), device="cuda", compile=mode)
    for _ in range(3):  # CUDA graphs are recorded after a warm-up run, then replayed
        out = compiled(frames).int()
        assert (out - eager).abs().max() <= 2


def test_nvenc_encodes_ten_bit_where_the_gpu_has_it(tmp_path):
    from vidsr.media.codecs import nvenc_unavailable

    reason = nvenc_unavailable("hevc_nvenc", "p010le", 512, 256)
    if reason is not None:
        pytest.skip(f"hevc_nvenc cannot open 10-bit here ({reason}); H100/H200 have no NVENC")
    src = tmp_path / "ramp10.mkv"
    ten_bit_gradient_clip(src)
    dst = tmp_path / "out.mkv"
    config = UpscaleConfig(model="fast", device="cuda", encode=EncodeConfig(codec="hevc_nvenc"))
    upscale_file(src, dst, config)
    with av.open(str(dst)) as c:
        assert c.streams.video[0].codec_context.name == "hevc"
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p10le"
