"""Where a network meets pixels: device, precision, memory layout, and the uint <-> float
conversion.

Frames travel as integer NHWC tensors (uint8 for 8-bit video, uint16 holding 16-bit-scaled samples
for deeper video). `Engine.to_input` and `Engine.to_output` are the only places in vidsr that change
pixel range or layout; everything else hands frames through untouched.

The engine also owns what keeps a frame running when memory is short: a frame too large is split
into overlapping tiles (vidsr.upscale.tiling), and an out-of-memory error at run time halves the
batch or switches to (smaller) tiles and tries the same frames again, with a warning; no frame is
lost.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cache

import torch
from torch import nn
from torch.nn import functional as F

from ..config import MIN_TILE
from ..errors import ConfigError, VidsrError
from ..models import fold_batchnorm
from .int8 import Int8Network, int8_available, int8_supported
from .tiling import context_pixels, upscale_tiled

# int8 runs in OpenVINO (vidsr.upscale.int8); the engine hands it float32.
_DTYPES = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    "int8": torch.float32,
}


@cache
def tune_malloc() -> bool:
    """Keep freed memory in glibc's heap instead of returning it to the kernel after every op.

    Each layer allocates and frees activations of tens of MB; by default glibc serves those with
    mmap and gives them back with munmap, so every frame pays ~100k page faults re-zeroing them.
    No mmap for large blocks and a high trim threshold removed those faults here (+40-70% fps on
    the CPU path). Only the process's peak heap is kept, which the next frame needs again anyway.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
        return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        return False


def is_oom(e: BaseException) -> bool:
    """An out-of-memory error from any device (CUDA raises OutOfMemoryError, the CPU a
    RuntimeError).
    """
    if isinstance(e, torch.OutOfMemoryError):
        return True
    msg = str(e)
    return isinstance(e, RuntimeError) and (
        "out of memory" in msg or "can't allocate memory" in msg or "not enough memory" in msg
    )


# Activations live at once, per the largest (input + output) pair of one layer: measured peaks of
# SRResNet/SRGAN on this CPU (fp32 and bf16, 720x576 and 1280x720) were 1.5-2.0x that pair,
# the rest being oneDNN's reordered copies and the allocator's fragments.
_PEAK_FACTOR = 2.0
_PROBE = 64  # input pixels per side of the probe that measures a network's activations


def available_memory() -> int | None:
    """Bytes the kernel says could be allocated without swapping (MemAvailable); None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def default_memory_budget() -> int:
    """--memory auto: half of what is available now (other programs and the encoder need the
    rest), or 2 GiB where that cannot be read."""
    free = available_memory()
    return free // 2 if free else 2 * 2**30


@torch.inference_mode()
def activation_bytes(model: nn.Module, dtype: torch.dtype, device: torch.device) -> float:
    """Peak activation bytes per input pixel, estimated from a small probe: the largest input +
    output of any one layer (what must coexist), times _PEAK_FACTOR; 0 where the probe fails."""
    largest = 0

    def hook(_module, inputs, output) -> None:
        nonlocal largest
        size = sum(t.numel() for t in inputs if isinstance(t, torch.Tensor))
        if isinstance(output, torch.Tensor):
            size += output.numel()
        largest = max(largest, size)

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        x = torch.zeros((1, 3, _PROBE, _PROBE), dtype=dtype, device=device)
        model(x.contiguous(memory_format=torch.channels_last))
    except (RuntimeError, ValueError):
        return 0.0  # a network that cannot take the probe: no estimate, no budget tiling
    finally:
        for h in handles:
            h.remove()
    size = torch.tensor([], dtype=dtype).element_size()
    return _PEAK_FACTOR * largest * size / (_PROBE * _PROBE)


# Tiles of a frame are different sizes (the edges are narrower), and the heap keeps the holes
# they leave: the peak of a tiled run measured up to 1.45x one tile's estimate. Tiles are sized
# for this share of the budget.
_TILED_SHARE = 0.65


def tile_for_budget(per_pixel: float, budget: int, pad: int, batch: int = 1) -> int:
    """The largest tile (input pixels a side, a multiple of 8) whose padded area fits `budget`."""
    side = int((_TILED_SHARE * budget / (per_pixel * max(1, batch))) ** 0.5) - 2 * pad
    return max(MIN_TILE, side // 8 * 8)


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def output_size(
    height: int, width: int, scale: int, outscale: float | None = None
) -> tuple[int, int]:
    """The size of an upscaled frame: the model's scale, or --outscale rounded to even sides
    (4:2:0 video needs them)."""
    if outscale is None:
        return height * scale, width * scale
    return _even(height * outscale), _even(width * outscale)


def batch_for_memory(per_frame: int, free: int, *, headroom: float = 0.8, cap: int = 32) -> int:
    """The largest batch whose measured per-frame footprint fits `headroom` of the free memory."""
    if per_frame <= 0:
        return cap
    return max(0, min(cap, int(free * headroom) // per_frame))


@cache
def cpu_has_fast_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX512-BF16 or AMX), so bf16 beats fp32, and
    oneDNN may use it: ONEDNN_MAX_CPU_ISA=AVX2 (a cap for testing, or a workaround) makes the
    convolutions emulate bf16, slower than fp32."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL"
    if cap.upper() not in ("ALL", "DEFAULT") and not any(
        isa in cap.upper() for isa in ("BF16", "AMX", "AVX10")
    ):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def resolve_device(device: str) -> torch.device:
    """A parsed --device (vidsr.config.parse_device) as a torch device: auto takes CUDA where
    there is one; CUDA asked for where there is none is one line."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise VidsrError("--device cuda was asked for, but no CUDA device is available")
    return torch.device(device)


def resolve_precision(
    precision: str, device: torch.device, *, has_parameters: bool = True, int8: bool = False
) -> str:
    """A parsed --precision for this device: auto picks fp16 on CUDA, bf16 on a CPU that has it
    natively, else int8 where `int8` says the network can (a built-in one, OpenVINO installed),
    fp32 otherwise (and for networks without weights)."""
    if precision != "auto":
        if device.type == "cpu" and precision == "fp16":
            raise VidsrError("--precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
        if device.type != "cpu" and precision == "int8":
            raise ConfigError("--precision", "int8 runs on the CPU only; use fp16 on CUDA")
        return precision
    if not has_parameters:
        return "fp32"  # interpolation baselines are cheap; keep them exact
    if device.type == "cuda":
        return "fp16"
    if cpu_has_fast_bf16():
        return "bf16"
    return "int8" if int8 else "fp32"


@dataclass(frozen=True)
class ValueRange:
    """What pixel value 0 and full scale mean to a network: (0, 1) or (-1, 1)."""

    low: float = 0.0
    high: float = 1.0


class Engine:
    """A network prepared for inference: BatchNorm folded, eval, on its device, dtype,
    channels_last.

    `tile` (vidsr.config.parse_tile's): None to tile where a frame would not fit (a CPU's memory
    budget, or an out-of-memory error), 0 never to tile, or a tile size in input pixels.
    `compile`: None, or a torch.compile mode ("default", "max-autotune";
    "reduce-overhead" captures CUDA graphs). Off by default: on the 2-core CPU here torch.compile
    was slower than eager oneDNN, and on a GPU it is unmeasured so far (see benchmarks/RESULTS.md).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str = "auto",
        precision: str = "auto",
        value_range: tuple[float, float] = (0.0, 1.0),
        tile: int | None = None,
        outscale: float | None = None,
        compile: str | None = None,
        threads: int | None = None,
        memory: int | None = None,
        warn: Callable[[str], None] | None = None,
    ):
        self.device = resolve_device(device)
        has_params = any(True for _ in model.parameters())
        # auto takes int8 on a CPU without native bf16, for the networks that have an int8 path
        # (1.25-1.7x fp32 there, within 0.1 dB: README "Speed per CPU class")
        int8 = precision == "auto" and self.device.type == "cpu" and has_params
        int8 = int8 and not cpu_has_fast_bf16() and int8_supported(model) and int8_available()
        self.precision = resolve_precision(
            precision, self.device, has_parameters=has_params, int8=int8
        )
        self.notes: list[str] = []  # choices made for the user, said once per run
        self._limit_precision(model, has_params)
        self.dtype = _DTYPES[self.precision]
        self.range = ValueRange(*value_range)
        self.scale = int(getattr(model, "scale", 4))
        self.outscale = outscale
        self.tile = tile  # None: tiles where a frame would not fit, 0: never tile, N: N x N tiles
        self.memory = memory  # bytes the activations may take on a CPU; None: default_memory_budget
        self.max_batch: int | None = None  # lowered by out-of-memory errors
        self.warn = warn  # where fallbacks are reported; the pipeline points it at the run's notes
        if self.device.type == "cpu":
            tune_malloc()
            # One per core. On a machine shared with other busy processes fewer can be faster:
            # every op waits for its slowest thread, and a descheduled one costs a time slice.
            torch.set_num_threads(threads or os.cpu_count() or 1)
        model = fold_batchnorm(model)
        self.model = model.to(self.device, dtype=self.dtype, memory_format=torch.channels_last)
        self.pad = context_pixels(self.model)
        if self.precision == "int8":  # self.model stays: the memory probe and tiling read it
            self._run = Int8Network(model, value_range=value_range, threads=threads)
        elif compile is None:
            self._run = self.model
        else:
            self._run = torch.compile(self.model, mode=compile)
        self._per_pixel: float | None = None  # activation bytes per input pixel, once measured
        self._memory_tiles: dict[tuple[int, int, int], int | None] = {}

    def _limit_precision(self, model: nn.Module, has_params: bool = True) -> None:
        """Reduced precision only where the architecture tolerates it (spandrel says which)."""
        if self.precision == "int8" and not has_params:
            self.notes.append(f"{type(model).__name__} has no weights to quantise: fp32")
            self.precision = "fp32"
        supported = {"fp16": "supports_half", "bf16": "supports_bfloat16"}.get(self.precision)
        if supported and not getattr(model, supported, True):
            self.notes.append(f"{type(model).__name__} does not run in {self.precision}: fp32")
            self.precision = "fp32"

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return output_size(height, width, self.scale, self.outscale)

    def memory_tile(self, height: int, width: int, batch: int = 1) -> int | None:
        """With --tile auto on a CPU: the tile size that keeps a batch of this frame size within
        the memory budget; None where it fits whole (and on CUDA, where an out-of-memory error is
        cheap to catch and answer instead: see _shrink). The CPU has no such error: the system
        swaps or kills the process first, so the budget is kept ahead of time.
        """
        if self.device.type != "cpu" or self.tile is not None:
            return None
        key = (height, width, batch)
        if key not in self._memory_tiles:
            if self._per_pixel is None:
                self._per_pixel = activation_bytes(self.model, self.dtype, self.device)
            budget = self.memory or default_memory_budget()
            tile = None
            if self._per_pixel and self._per_pixel * height * width * batch > budget:
                tile = tile_for_budget(self._per_pixel, budget, self.pad, batch)
                tile = tile if tile < max(height, width) else None
            self._memory_tiles[key] = tile
        return self._memory_tiles[key]

    def memory_note(self, height: int, width: int, batch: int = 1) -> str:
        """What memory_tile chose, for the run's first line ("" when untiled)."""
        tile = self.memory_tile(height, width, batch)
        if not tile:
            return ""
        budget = self.memory or default_memory_budget()
        return f"tiles {tile}x{tile} (memory budget {budget / 2**30:.1f} GiB)"

    def autocast(self):
        # The weights are already cast to self.dtype; autocast only guards ops that would upcast.
        if self.device.type == "cuda" and self.dtype != torch.float32:
            return torch.autocast("cuda", dtype=self.dtype)
        return nullcontext()

    def to_input(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8/uint16 -> (N, 3, H, W) float in the model's range, channels_last."""
        full = 255.0 if frames.dtype == torch.uint8 else 65535.0
        x = frames.to(self.device, non_blocking=True).permute(0, 3, 1, 2).to(self.dtype)
        span = self.range.high - self.range.low
        return x.mul_(span / full).add_(self.range.low)  # NHWC memory: already channels_last

    def to_output(
        self, y: torch.Tensor, dtype: torch.dtype, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(N, 3, H, W) float in the model's range -> (N, H, W, 3) integer frames of `dtype`.

        With `out` (an (N, H, W, 3) tensor of `dtype`), the frames are written there.
        """
        full = 255.0 if dtype == torch.uint8 else 65535.0
        span = self.range.high - self.range.low
        y = y.float().sub_(self.range.low).mul_(full / span).clamp_(0, full).round_()
        y = y.to(dtype).permute(0, 2, 3, 1)  # channels_last memory: this view is already NHWC
        if out is None:
            return y.contiguous()
        return out.copy_(y)

    def forward(self, x: torch.Tensor, tile: int | None = None) -> torch.Tensor:
        """Float (N, 3, H, W) -> float (N, 3, sH, sW), in tiles when `tile` (default: self.tile)
        says so."""
        tile = self.tile if tile is None else tile
        with self.autocast():
            if tile:
                y = upscale_tiled(self._run, x, scale=self.scale, tile=tile, pad=self.pad)
            else:
                y = self._run(x)
        return self._resize(y)

    def _resize(self, y: torch.Tensor) -> torch.Tensor:
        """--outscale: an antialiased bicubic resize on the device, from the model's scale."""
        if self.outscale is None:
            return y
        size = self.output_size(y.shape[-2] // self.scale, y.shape[-1] // self.scale)
        if tuple(y.shape[-2:]) == size:
            return y
        return F.interpolate(y.float(), size=size, mode="bicubic", antialias=True,
                             align_corners=False)  # fmt: skip

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Upscale a batch of integer NHWC frames; returns integer NHWC frames on the same device.

        Out of memory: the batch is halved, then the frame is tiled, then the tiles are halved,
        each time with a warning, and the same frames are run again. Only a frame that fails even
        in the smallest tiles raises.
        """
        n = frames.shape[0]
        if out is None:
            oh, ow = self.output_size(*frames.shape[1:3])
            out = frames.new_empty((n, oh, ow, frames.shape[3]))
        start = 0
        while start < n:
            step = min(n - start, self.max_batch or n)
            tile = self.tile or self.memory_tile(frames.shape[1], frames.shape[2], step)
            try:
                y = self.forward(self.to_input(frames[start : start + step]), tile)
                self.to_output(y, frames.dtype, out[start : start + step])
                start += step
                continue
            except (torch.OutOfMemoryError, RuntimeError) as e:
                if not is_oom(e):
                    raise
            # Outside the except block: its traceback held the activations that did not fit.
            self._shrink(step, frames.shape[1], frames.shape[2], tile)
        return out

    def _shrink(self, batch: int, height: int, width: int, tile: int | None = None) -> None:
        """Make the next attempt need less memory, or raise when nothing smaller is left."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if batch > 1:
            self.max_batch = batch // 2
            self._warn(f"out of memory: batch size lowered to {self.max_batch}")
            return
        if self.tile == 0:
            raise VidsrError(
                f"out of memory on a single {width}x{height} frame and --tile off forbids tiles"
            )
        tile = (tile or self.tile or max(height, width)) // 2
        if tile < MIN_TILE:
            raise VidsrError(f"out of memory even with {self.tile}-pixel tiles")
        self.tile = tile
        self._warn(f"out of memory: processing frames in {tile}x{tile} tiles")

    def _warn(self, msg: str) -> None:
        if self.warn is not None:
            self.warn(msg)

    @torch.inference_mode()
    def auto_batch_size(self, height: int, width: int, *, cap: int = 32) -> int:
        """The largest batch that fits the free device memory for this frame size, measured.

        On a CPU: 1 (batching measured no faster there, and memory is the system's). On CUDA a
        one-frame probe measures the peak memory a frame takes; the batch is what fits in 80% of
        the free memory, then one run at that size confirms it (an OOM there halves it).
        """
        if self.device.type != "cuda":
            return 1
        probe = torch.zeros((1, height, width, 3), dtype=torch.uint8, device=self.device)
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        base = torch.cuda.memory_allocated(self.device)
        self(probe)  # may tile itself when even one frame does not fit
        torch.cuda.synchronize(self.device)
        per_frame = torch.cuda.max_memory_allocated(self.device) - base
        free, _total = torch.cuda.mem_get_info(self.device)
        cached = torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
        batch = max(1, batch_for_memory(per_frame, free + cached, cap=cap))
        if self.tile:
            return 1  # a frame that needs tiles leaves no room for a second one
        self.max_batch = None
        self(probe.expand(batch, -1, -1, -1))  # lowers self.max_batch if it does not fit after all
        return min(batch, self.max_batch or batch)
