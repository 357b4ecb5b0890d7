"""`vidsr bench`: throughput of each stage alone and of the whole pipeline, in one process.

All numbers come from the same Engine (same threads, same precision, same batch size), already warm:
- model: frames already in memory through the pipeline's own slot ring (copies, network, copies);
- decode: the generated clip read to RGB frames, as the pipeline's reader does;
- encode: upscaled-size frames written with the pipeline's encoder settings;
- pipeline: `upscale_file` on the clip, wall clock from open to the renamed output, in one pass;
- segmented: the same, written as resumable segments (two in the clip: a seam and the join; a
  real run cuts every 10 s, so this is a bound on what resume costs).
The network has random weights: speed does not depend on the values.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..config import UpscaleConfig
from ..errors import VidsrError
from ..media.decode import FrameReader
from ..media.encode import VideoWriter
from ..media.probe import probe
from ..media.sample import sample_frame, write_sample
from ..models import build_model
from ..models.records import COMMUNITY
from ..upscale.engine import Engine
from ..upscale.pipeline import resolve_batch_size, upscale_file
from ..upscale.profile import StageClock
from ..upscale.slots import SlotRing


@dataclass
class BenchResult:
    model_fps: float
    pipeline_fps: float
    segmented_fps: float
    steady_off_fps: float  # the pipeline with --temporal off (pipeline_fps: with the config's)
    decode_fps: float
    encode_fps: float
    device: str
    precision: str
    batch_size: int
    size: str
    scale: int = 4
    profile: dict | None = None  # --profile: where the time goes (profile_stages)


def parse_size(size: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise VidsrError(f"expected WIDTHxHEIGHT, got {size!r}") from None
    if width < 8 or height < 8:
        raise VidsrError(f"frame size {size} is too small")
    return width, height


def _sync(engine: Engine) -> None:
    if engine.device.type == "cuda":
        torch.cuda.synchronize(engine.device)


def model_fps(
    engine: Engine, frames: np.ndarray, batch: int, count: int, *, warmup: int = 2
) -> float:
    """Frames per second through the slot ring alone: `count` frames after `warmup` batches.

    As in the pipeline, up to `slots` batches are in flight and a batch's output is read back (its
    D2H event waited on) before its out slot is reused.
    """
    _, h, w, _ = frames.shape
    ring = SlotRing(engine, batch=batch, height=h, width=w)
    slots = ring.free_in.qsize()
    inputs = []
    for i in range(slots):
        slot = ring.free_in.get()
        chunk = np.resize(frames[i * batch : i * batch + batch], (batch, h, w, 3))
        inputs.append(ring.fill(slot, chunk, list(range(batch))))
    batches = -(-count // batch)

    def go(count: int) -> None:
        flight: deque = deque()
        for i in range(count):
            if len(flight) == slots:
                done = flight.popleft()
                done.frames()
                ring.free_out.put(done)
            flight.append(ring.run(inputs[i % slots], ring.free_out.get()))
        while flight:
            done = flight.popleft()
            done.frames()
            ring.free_out.put(done)

    go(warmup)
    _sync(engine)
    t = time.perf_counter()
    go(batches)
    _sync(engine)
    return batches * batch / (time.perf_counter() - t)


def decode_fps(clip: Path, batch: int) -> float:
    info = probe(clip)
    t = time.perf_counter()
    count = 0
    with FrameReader(info, batch_size=batch) as reader:
        for b in reader:
            count += len(b.frames)
    return count / (time.perf_counter() - t)


def encode_fps(clip: Path, out: Path, config: UpscaleConfig, scale: int, frames: int) -> float:
    info = probe(clip)
    big = [
        np.ascontiguousarray(
            np.repeat(np.repeat(sample_frame(i, info.width, info.height), scale, 0), scale, 1)
        )
        for i in range(min(frames, 8))
    ]
    pts = _clip_pts(clip)[:frames]
    t = time.perf_counter()
    with VideoWriter(info, out, config.encode, scale=scale, overwrite=True) as writer:
        for i, p in enumerate(pts):
            writer.write(big[i % len(big)], p)
    return len(pts) / (time.perf_counter() - t)


def _clip_pts(clip: Path) -> list[int]:
    info = probe(clip)
    with FrameReader(info) as reader:
        return [p for b in reader for p in b.pts]


def run_bench(
    config: UpscaleConfig,
    *,
    size: str = "320x180",
    frames: int = 24,
    repeat: int = 2,
    threads: int | None = None,
    workdir: Path | None = None,
    profile: bool = False,
) -> BenchResult:
    """The measurements for `config`'s model and engine options (model, weights, device,
    precision, batch size, tile, memory); a registry model runs with random weights, a
    `config.weights` file (any architecture, vidsr's or a community one) with its own."""
    width, height = parse_size(size)
    net = _network(config.model, config.weights)
    engine = Engine(net, device=config.device, precision=config.precision, tile=config.tile,
                    memory=config.memory, threads=threads)  # fmt: skip
    config = replace(
        config,
        model=config.model if config.weights is None else "bicubic",  # only for its checks
        weights=None,
        overwrite=True,
        quiet=True,
        segment_seconds=0,
    )
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        clip = write_sample(
            Path(tmp) / "clip.mp4", width=width, height=height, seconds=frames / 25, fps=25
        )
        batch = resolve_batch_size(engine, config.batch_size, probe(clip))
        config = replace(config, batch_size=batch)
        best = _measure(engine, config, clip, frames, repeat, Path(tmp))
        stages = profile_stages(engine, config, clip, frames, Path(tmp)) if profile else None
    return BenchResult(
        **{f"{k}_fps": round(v, 3) for k, v in best.items()},
        device=str(engine.device),
        precision=engine.precision,
        batch_size=batch,
        size=f"{width}x{height}",
        scale=engine.scale,
        profile=stages,
    )


def _network(model: str, weights: Path | None):
    if weights is not None or model in COMMUNITY:  # a file's own weights (fetched by name)
        from ..models.weights import load_network

        return load_network(model, weights)[0]
    with torch.random.fork_rng():  # the same random weights every run: int8 caches its graph
        torch.manual_seed(0)
        net = build_model(model)
    return net.fuse() if hasattr(net, "fuse") else net  # what inference runs: one conv a layer


def _measure(
    engine: Engine, config: UpscaleConfig, clip: Path, frames: int, repeat: int, tmp: Path
) -> dict[str, float]:
    """Best of `repeat` of each measurement, interleaved so a busy moment hits them alike."""
    info = probe(clip)
    batch = int(config.batch_size)
    segmented = segmented_config(config, frames)
    still = np.stack(
        [sample_frame(i, info.width, info.height) for i in range(min(frames, 3 * batch))]
    )
    steady_off = replace(config, temporal="off")
    best = dict(model=0.0, pipeline=0.0, segmented=0.0, decode=0.0, encode=0.0, steady_off=0.0)
    for _ in range(max(1, repeat)):
        best["model"] = max(best["model"], model_fps(engine, still, batch, frames))
        best["decode"] = max(best["decode"], decode_fps(clip, batch))
        enc = encode_fps(clip, tmp / "enc.mp4", config, engine.scale, frames)
        best["encode"] = max(best["encode"], enc)
        runs = [("pipeline", config), ("segmented", segmented), ("steady_off", steady_off)]
        for name, cfg in runs if config.temporal else runs[:2]:
            result = upscale_file(clip, tmp / f"{name}.mp4", cfg, engine=engine)
            best[name] = max(best[name], result.frames / result.seconds)
    if not config.temporal:
        best["steady_off"] = best["pipeline"]
    return best


def segmented_config(config: UpscaleConfig, frames: int) -> UpscaleConfig:
    """The config of the segmented measurement: the generated clip (25 fps) in two segments."""
    return replace(config, segment_seconds=max(1, frames // 2) / 25, resume=False)


def profile_stages(
    engine: Engine, config: UpscaleConfig, clip: Path, frames: int, tmp: Path
) -> dict:
    """Where the time goes, in ms per frame: each stage's CPU time alone (process CPU seconds
    over a warm pass of that stage only, every thread of it counted), then one pipeline and one
    segmented pass with every section timed on the thread that runs it (wall time: the stages
    overlap) and the process's CPU time against the cores there are."""
    info = probe(clip)
    batch = int(config.batch_size)
    still = np.stack([sample_frame(i, info.width, info.height) for i in range(min(frames, 3))])

    def cpu_ms(fn) -> float:
        t = time.process_time()
        fn()
        return round(1000 * (time.process_time() - t) / frames, 2)

    alone = {
        "decode": cpu_ms(lambda: decode_fps(clip, batch)),
        "model": cpu_ms(lambda: model_fps(engine, still, batch, frames, warmup=0)),
        "colour conversion + encode": cpu_ms(
            lambda: encode_fps(clip, tmp / "enc.mp4", config, engine.scale, frames)
        ),
    }
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    out = {"cores": cores or 1, "alone_cpu_ms": alone}
    segmented = segmented_config(config, frames)
    for name, cfg in (("pipeline", config), ("segmented", segmented)):
        clock = StageClock()
        result = upscale_file(clip, tmp / f"profiled-{name}.mp4", cfg, engine=engine, clock=clock)
        clock.stop()
        n = result.frames
        out[name] = {
            "wall_ms": round(1000 * clock.wall / n, 2),
            "cpu_ms": round(1000 * clock.cpu / n, 2),
            "sections_ms": {k: round(v, 2) for k, v in clock.per_frame_ms(n).items()},
        }
    return out


__all__ = ["BenchResult", "parse_size", "profile_stages", "run_bench"]
