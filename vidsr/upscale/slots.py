"""Preallocated frame slots between the host threads and the device, ordered by events.

    decode thread        model thread                                    encode thread
    fill in.host -> H2D (copy stream) -> engine (compute stream) -> D2H (copy stream) -> out.host
         ^  in.h2d_done                in.dev_free / out.computed      out.d2h_done  |
         +-- free in-slots <----------------------------------------  free out-slots <-+

On CUDA the host buffers are pinned, copies are non_blocking on their own streams, and CUDA events
(never a device-wide synchronize) say when a buffer may be reused: the model thread queues work and
moves on; a host thread waits only on the one event that guards the buffer it is about to touch.
On the CPU the same code runs with no streams, no-op events, and device buffers that *are* the
host buffers, so every copy is skipped. After construction nothing is allocated per frame here;
the network's own activations come from the caching allocator (CUDA) or the tuned heap (CPU).
"""

from __future__ import annotations

import queue
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from .engine import Engine


class _NoEvent:
    """A CPU stand-in for torch.cuda.Event: work on the CPU is done when the call returns."""

    def record(self, stream=None) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def query(self) -> bool:
        return True


class Lane:
    """One CUDA stream, or nothing on the CPU: `with lane:` runs work on it; waits are on events."""

    def __init__(self, device: torch.device, stream: torch.cuda.Stream | None = None):
        self.device = device
        self.stream = stream if stream is not None or device.type != "cuda" else None
        if device.type == "cuda" and stream is None:
            self.stream = torch.cuda.Stream(device)

    def event(self):
        return torch.cuda.Event() if self.device.type == "cuda" else _NoEvent()

    def wait(self, event) -> None:
        if self.stream is not None:
            self.stream.wait_event(event)

    def record(self, event) -> None:
        event.record(self.stream) if self.stream is not None else event.record()

    def __enter__(self):
        self._ctx = torch.cuda.stream(self.stream) if self.stream is not None else nullcontext()
        return self._ctx.__enter__()

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


@dataclass
class InSlot:
    host: torch.Tensor  # (B, H, W, 3) integer frames, pinned on CUDA
    dev: torch.Tensor  # the same shape on the device; the host tensor itself on the CPU
    h2d_done: object  # host buffer may be refilled once this has happened
    dev_free: object  # device buffer may be overwritten once the model has read it
    n: int = 0  # frames filled
    pts: list[int] | None = None


@dataclass
class OutSlot:
    host: torch.Tensor  # (B, sH, sW, 3) integer frames, pinned on CUDA
    dev: torch.Tensor
    computed: object  # the model has written dev
    d2h_done: object  # host holds the frames (and dev may be overwritten)
    n: int = 0
    pts: list[int] | None = None
    lr: np.ndarray | None = None  # the input frames, kept for the stabiliser (--temporal)

    def frames(self) -> np.ndarray:
        """The upscaled frames, once their copy has landed (waits on this slot's event only)."""
        self.d2h_done.synchronize()
        return self.host.numpy()[: self.n]


class SlotRing:
    """`slots` input and output slots of `batch` frames each, and the three lanes that move them.

    Host threads take free slots from `free_in` / `free_out` (queues: the pipeline's stop logic can
    wait on them) and give them back when done; the model thread calls `run`.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        batch: int,
        height: int,
        width: int,
        dtype: torch.dtype = torch.uint8,
        slots: int = 3,
    ):
        self.engine = engine
        device = engine.device
        cuda = device.type == "cuda"
        self.h2d = Lane(device)
        self.d2h = Lane(device)
        self.compute = Lane(device, torch.cuda.current_stream(device) if cuda else None)
        oh, ow = engine.output_size(height, width)
        self.free_in: queue.Queue[InSlot] = queue.Queue()
        self.free_out: queue.Queue[OutSlot] = queue.Queue()
        for _ in range(max(2, slots)):
            host = torch.empty((batch, height, width, 3), dtype=dtype, pin_memory=cuda)
            dev = torch.empty_like(host, device=device) if cuda else host
            self.free_in.put(InSlot(host, dev, self.h2d.event(), self.compute.event()))
            host = torch.empty((batch, oh, ow, 3), dtype=dtype, pin_memory=cuda)
            dev = torch.empty_like(host, device=device) if cuda else host
            self.free_out.put(OutSlot(host, dev, self.compute.event(), self.d2h.event()))

    @staticmethod
    def fill(slot: InSlot, frames: np.ndarray, pts: list[int]) -> InSlot:
        """Copy decoded frames into a free input slot (waits until its last H2D copy is done)."""
        slot.h2d_done.synchronize()
        n = len(frames)
        np.copyto(slot.host.numpy()[:n], frames)
        slot.n, slot.pts = n, list(pts)
        return slot

    def run(self, slot: InSlot, out: OutSlot) -> OutSlot:
        """Queue H2D, the network and D2H for one filled slot; returns at once on CUDA."""
        n = slot.n
        if slot.dev is not slot.host:
            with self.h2d:
                self.h2d.wait(slot.dev_free)
                slot.dev[:n].copy_(slot.host[:n], non_blocking=True)
                self.h2d.record(slot.h2d_done)
        with self.compute:
            self.compute.wait(slot.h2d_done)
            self.compute.wait(out.d2h_done)  # the device out buffer is free again
            self.engine(slot.dev[:n], out=out.dev[:n])
            self.compute.record(slot.dev_free)
            self.compute.record(out.computed)
        if out.dev is not out.host:
            with self.d2h:
                self.d2h.wait(out.computed)
                out.host[:n].copy_(out.dev[:n], non_blocking=True)
                self.d2h.record(out.d2h_done)
        out.n, out.pts = n, slot.pts
        return out
