"""What the user sees while a job runs: a rich progress bar on a terminal, then one summary line."""

from __future__ import annotations

import sys
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

from .media.images import is_image


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


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
        if self.quiet or not self.console.is_terminal:
            yield None
            return
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[fps]:.2f} fps"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.console, transient=True) as bar:
            task = bar.add_task(src.name, total=None, fps=0.0)

            def update(done: int, total: int) -> None:
                elapsed = bar.tasks[task].elapsed or 0.0
                bar.update(
                    task,
                    completed=done,
                    total=total or None,
                    fps=done / elapsed if elapsed else 0.0,
                )

            yield update

    def warn(self, msg: str) -> None:
        # Not hidden by --quiet: it hides progress and summaries, never what went wrong.
        self.console.print(f"[yellow]warning:[/] {msg}", markup=True, highlight=False)

    def error(self, msg: str) -> None:
        print(f"vidsr: error: {msg}", file=sys.stderr)

    def summary(self, r) -> None:
        if self.quiet:
            return
        if is_image(r.input):
            size = human_bytes(r.output_bytes)
            print(f"{r.output}: image in {r.seconds:.1f} s, {size}", flush=True)
            return
        print(
            f"{r.output}: {r.frames} frames in {r.seconds:.1f} s ({r.fps:.2f} fps), "
            f"{human_bytes(r.output_bytes)}",
            flush=True,
        )

    def totals(self, results) -> None:
        failed = [r for r in results if r.error]
        if not self.quiet or failed:
            print(
                f"{len(results) - len(failed)} of {len(results)} {_counted(results)} upscaled"
                + (f", {len(failed)} failed" if failed else ""),
                file=sys.stderr,
            )
