"""What the user sees while a job runs: one line on what was chosen, progress, one summary line.

On a terminal progress is a rich bar. Where stderr is not a terminal (nohup, CI, a service's
journal) a bar would be noise and silence would look like a hang: a plain line every
`LOG_EVERY` seconds says the frames done, the fps and the ETA instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..errors import Cancelled, VidsrError
from ..media.images import is_image
from ..upscale.pipeline import UpscaleResult

LOG_EVERY = 10.0  # seconds between progress lines when stderr is not a terminal


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def human_seconds(s: float) -> str:
    s = int(round(s))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _counted(results) -> str:
    """What a folder held: "videos", "images", or "files (2 videos, 1 image)"."""
    images = sum(1 for r in results if is_image(r.input))
    videos = len(results) - images
    if not images or not videos:
        return "images" if images else "videos"
    return f"files ({videos} video{'s' * (videos > 1)}, {images} image{'s' * (images > 1)})"


class Reporter:
    def __init__(self, *, quiet: bool = False):
        self.quiet = quiet
        self.console = Console(stderr=True, highlight=False)

    @contextmanager
    def track(self, src: Path):
        if self.quiet:
            yield None
        elif not self.console.is_terminal:
            yield LogLines(src.name)
        else:
            with _bar(self.console, src.name) as update:
                yield update

    def info(self, msg: str) -> None:
        """A line on what this run chose or does (model, device, ..., resuming); not with -q."""
        if not self.quiet:
            print(msg, file=sys.stderr, flush=True)

    def warn(self, msg: str) -> None:
        # Not hidden by --quiet: it hides progress and summaries, never what went wrong.
        # soft_wrap: one line stays one line in a log, however narrow rich thinks the console is
        self.console.print(
            f"[yellow]warning:[/] {msg}", markup=True, highlight=False, soft_wrap=True
        )

    def error(self, msg: str) -> None:
        print(f"vidsr: error: {msg}", file=sys.stderr)

    def summary(self, r) -> None:
        if self.quiet:
            return
        if r.skipped:
            print(f"{r.output}: exists, skipped", flush=True)
            return
        if is_image(r.input):
            size = human_bytes(r.output_bytes)
            print(f"{r.output}: image in {r.seconds:.1f} s, {size}", flush=True)
            return
        resumed = f", resumed after frame {r.resumed_frames}" if r.resumed_frames else ""
        print(
            f"{r.output}: {r.frames} frames in {r.seconds:.1f} s ({r.fps:.2f} fps{resumed}), "
            f"{human_bytes(r.output_bytes)}",
            flush=True,
        )

    def totals(self, results) -> None:
        failed = [r for r in results if r.error]
        skipped = [r for r in results if r.skipped]
        done = len(results) - len(failed) - len(skipped)
        if not self.quiet or failed:
            print(
                f"{done} of {len(results)} {_counted(results)} upscaled"
                + (f", {len(skipped)} skipped (output exists)" if skipped else "")
                + (f", {len(failed)} failed" if failed else ""),
                file=sys.stderr,
            )


@contextmanager
def _bar(console: Console, name: str):
    """A rich bar; its task starts at the first report, so frames kept from an interrupted run
    show as done without counting toward the speed."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[fps]:.2f} fps"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        state: dict = {}

        def update(done: int, total: int) -> None:
            if "task" not in state:
                state["task"] = bar.add_task(name, total=total or None, completed=done, fps=0.0)
                state["first"] = done
                return
            task = state["task"]
            elapsed = bar.tasks[task].elapsed or 0.0
            fps = (done - state["first"]) / elapsed if elapsed else 0.0
            bar.update(task, completed=done, total=total or None, fps=fps)

        yield update


class LogLines:
    """progress(done, total) that says where a job is every LOG_EVERY seconds, in one line
    (printed to stderr, or handed to `emit`: the watcher's log)."""

    def __init__(self, name: str, emit: Callable[[str], None] | None = None):
        self.name = name
        self.emit = emit or (lambda line: print(line, file=sys.stderr, flush=True))
        self.first: int | None = None
        self.t0 = self.last = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first, self.t0, self.last = done, now, now
            return
        if now - self.last < LOG_EVERY:
            return
        self.last = now
        fps = (done - self.first) / (now - self.t0) if now > self.t0 else 0.0
        of = f"/{total}" if total else ""
        pct = f" ({100 * done / total:.0f}%)" if total else ""
        eta = f", ETA {human_seconds((total - done) / fps)}" if total and fps > 0 else ""
        self.emit(f"{self.name}: {done}{of} frames{pct}, {fps:.2f} fps{eta}")


def settle(
    job: tuple[Path, Path], count: int, reporter, run: Callable[[], UpscaleResult]
) -> UpscaleResult:
    """A job's result, summarised; or its failure as a result with `error`, reported, so that a
    folder's other files go on. A single file's failure, and a cancel, are raised instead.
    The one place every runner (vidsr.jobs.runner) settles a job."""
    src, dst = job
    try:
        result = run()
    except VidsrError as e:
        if count == 1 or isinstance(e, Cancelled):
            raise
        reporter.error(f"{src.name}: {e}")
        return UpscaleResult(src, dst, error=str(e))
    reporter.summary(result)
    return result
