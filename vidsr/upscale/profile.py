"""Where a run's time goes: wall-clock seconds per stage section, summed over the run.

`run_stages` and the writers time their sections with a `StageClock` when one is given
(`vidsr bench --profile`); otherwise with `untimed`, which costs a no-op context per call.
A section is timed on the thread that runs it, so "model" is the wall time the model thread
spent in the network (its worker threads included), and the "waiting" sections say which stage
the others waited for: the critical path of the run.

Process CPU time is taken over the whole run too: CPU seconds per wall second against the
cores there are says whether the machine was full (stages then slow each other down, and only
less work per frame helps) or idle (a stage waits on another: more overlap would help).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext


def untimed(name: str):
    """The clock of a run that is not profiled."""
    return nullcontext()


class StageClock:
    """`with clock("encode"): ...` adds the section's wall time to "encode" (thread-safe)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._wall0 = time.perf_counter()
        self._cpu0 = time.process_time()
        self.wall = 0.0
        self.cpu = 0.0

    @contextmanager
    def __call__(self, name: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            dt = time.perf_counter() - t
            with self._lock:
                self.seconds[name] += dt
                self.calls[name] += 1

    def stop(self) -> StageClock:
        """The run is over: its wall and process CPU time are kept."""
        self.wall = time.perf_counter() - self._wall0
        self.cpu = time.process_time() - self._cpu0
        return self

    def per_frame_ms(self, frames: int) -> dict[str, float]:
        return {k: 1000 * v / max(1, frames) for k, v in sorted(self.seconds.items())}


__all__ = ["StageClock", "untimed"]
